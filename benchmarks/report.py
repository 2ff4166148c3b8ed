"""Turn a run's JSON document into a table on stdout, and save it under results/."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.record import NOISY_CORES

RESULTS_DIR = Path(__file__).resolve().parent / "results"

COLUMNS = ("target", "req/s", "p50 ms", "p99 ms", "CPU s/10k", "RSS MiB", "vs direct")
MIB = 2**20


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def scenario_table(sc: dict[str, Any], cpus: int | None = None) -> str:
    s = sc["scenario"]
    title = f"== {s['name']}: {s['description']}, {sc['connections']} connections"
    if sc.get("idle_connections"):
        title += f" (+{sc['idle_connections']:,} idle)"
    if s.get("pinned"):
        title += ", pinned"
    if sc.get("loadgen"):
        title += f"; loadgen {sc['loadgen']}"
    if sc.get("skipped"):
        return f"{title}\nSKIPPED: {sc['skipped']}"
    ratios: dict[str, float] = sc["ratio_to_direct"]
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for name, tr in sc["targets"].items():
        m = tr["median"]
        if tr.get("skipped"):
            rows.append((name, "n/a", "", "", "", "", ""))
            notes.append(f"  {name}: {tr['skipped']}")
            continue
        if m is None:
            reason = (tr["error"] or "no successful run").splitlines()[0]
            rows.append((name, "failed", "", "", "", "", ""))
            notes.append(f"  {name}: {reason}")
            continue
        rss = m["peak_rss_bytes"]
        rows.append(
            (
                name,
                # GiB/s and other small rates keep two decimals.
                _f(m["requests_per_s"], ",.0f" if m["requests_per_s"] >= 100 else ",.2f"),
                _f(m["p50_us"] / 1000, ".3f"),
                _f(m["p99_us"] / 1000, ".3f"),
                _f(m["cpu_s_per_10k"], ".3f"),
                _f(rss / 2**20 if rss else None, ".1f"),
                _f(ratios.get(name), ".2f"),
            )
        )
        if (m.get("foreign_cores") or 0) > NOISY_CORES:
            notes.append(
                f"  {name}: noisy, other processes used ~{m['foreign_cores']:.1f} CPUs "
                "during the runs (median)"
            )
        if m["errors"] or m["non_2xx"]:
            notes.append(f"  {name}: {m['errors']} errors, {m['non_2xx']} non-2xx responses")
        if m.get("idle_connections") is not None:
            delta = m.get("idle_rss_delta_bytes")
            total = m.get("idle_rss_bytes")
            mem = (
                f"RSS {total / MIB:.1f} MiB with them open, +{delta / MIB:.1f} MiB for them"
                if delta is not None and total
                else "RSS not measured (no proxy process)"
            )
            notes.append(
                f"  {name}: {m['idle_connections']:,} idle connections held; {mem}; "
                f"{m['idle_still_open']:,} still open at the end"
            )
    columns = (COLUMNS[0], s.get("unit", "req/s"), *COLUMNS[2:])
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{first}  {rest}"

    out = [title, line(columns), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    vs = dict(sc["turnout_vs_peers"])
    w2 = vs.pop("turnout-w2", None)
    if w2 and w2.get("requests_per_s"):
        lg = sc["targets"].get("turnout-w2", {}).get("median", {}).get("loadgen_cores")
        threads = sc.get("loadgen_threads") or 1
        bound = (
            f"; the load generator used {lg:.2f} CPUs of its {threads} thread(s) / process(es)"
            + (", so it was likely the limit" if lg >= 0.9 * threads else "")
            if lg
            else ""
        )
        out.append(
            f"scaling: turnout-w2 / turnout req/s {1 / w2['requests_per_s']:.2f}x "
            f"(2 workers against 1{bound})"
        )
        budget = _cpu_budget(sc["targets"].get("turnout-w2", {}).get("median") or {}, cpus)
        if budget:
            out.append(f"  CPUs in use during turnout-w2's runs: {budget}")
    vs.pop("turnout-bare", None)
    vs.pop("turnout-obs", None)
    vs.pop("turnout-chain", None)
    for variant, base, what in VARIANTS:
        text = _variant_ratio(sc, variant, base)
        if text:
            out.append(f"{what}: {variant} / {base} req/s {text}")
    if vs:
        out.append("turnout / peer:")
        for peer, r in vs.items():
            parts = [
                f"req/s {_f(r['requests_per_s'], '.2f')}x",
                f"CPU/req {_f(r['cpu_per_request'], '.2f')}x",
                f"p50 {_f(r['p50'], '.2f')}x",
                f"p99 {_f(r['p99'], '.2f')}x",
                f"RSS {_f(r['peak_rss'], '.2f')}x",
            ]
            paired = _paired(sc, "turnout", peer)
            if paired is not None:
                parts.append(f"req/s per-repetition median {paired:.2f}x")
            out.append(f"  vs {peer:<8} " + ", ".join(parts))
    if notes:
        out.append("notes:")
        out += notes
    return "\n".join(out)


def _cpu_budget(m: dict[str, Any], cpus: int | None) -> str | None:
    """Who used the machine's CPUs while a target ran: tells a saturated machine apart."""
    rate, proxy = m.get("requests_per_s"), m.get("cpu_s_per_10k")
    if not rate or proxy is None:
        return None
    backend = (m.get("backend_cpu_s_per_10k") or 0.0) * rate / 10_000
    parts = [
        f"proxy {proxy * rate / 10_000:.2f}",
        f"backend {backend:.2f}",
        f"load generator {m.get('loadgen_cores') or 0.0:.2f}",
        f"others {m.get('foreign_cores') or 0.0:.2f}",
    ]
    total = proxy * rate / 10_000 + backend + (m.get("loadgen_cores") or 0.0)
    total += m.get("foreign_cores") or 0.0
    return ", ".join(parts) + f"; {total:.2f} of {cpus or os.cpu_count()}"


# Feature rows read against their base in the same scenario: (variant, base, label).
VARIANTS = (
    (
        "turnout-obs",
        "turnout-bare",
        "observability (StatsD + Prometheus + JSON access log against all off)",
    ),
    ("turnout-chain", "turnout", "middlewares (issue 6's chain against the bare router)"),
)


def _rates(target: dict[str, Any]) -> dict[int, float]:
    return {
        r["repetition"]: r["load"]["requests_per_s"]
        for r in target.get("runs", [])
        if r.get("load") and not r.get("error") and r["load"].get("requests_per_s")
    }


def _pairs(sc: dict[str, Any], a: str, b: str) -> list[float]:
    """Sorted ratios a / b of the runs of one repetition (run back to back)."""
    ta, tb = sc["targets"].get(a), sc["targets"].get(b)
    if not ta or not tb:
        return []
    ra, rb = _rates(ta), _rates(tb)
    return sorted(ra[i] / rb[i] for i in ra.keys() & rb.keys())


def _paired(sc: dict[str, Any], a: str, b: str) -> float | None:
    pairs = _pairs(sc, a, b)
    if not pairs:
        return None
    mid = len(pairs) // 2
    return pairs[mid] if len(pairs) % 2 else (pairs[mid - 1] + pairs[mid]) / 2


def _variant_ratio(sc: dict[str, Any], variant: str, base: str) -> str | None:
    """Ratio of medians, and the median of per-repetition ratios.

    Repetition i of every target runs back to back (A B A B ...), so the ratio
    of neighbouring runs cancels most of the drift of a shared machine; on this
    noisy VM it is the steadier figure.
    """
    targets = sc["targets"]
    a, b = targets.get(variant), targets.get(base)
    if not a or not b:
        return None
    ma = (a.get("median") or {}).get("requests_per_s")
    mb = (b.get("median") or {}).get("requests_per_s")
    if not ma or not mb:
        return None
    text = f"{ma / mb:.2f}x"
    pairs = _pairs(sc, variant, base)
    paired = _paired(sc, variant, base)
    if paired is not None:
        text += f" (per-repetition ratios: median {paired:.2f}x, {pairs[0]:.2f}-{pairs[-1]:.2f})"
    return text


def render(doc: dict[str, Any]) -> str:
    o = doc["options"]
    head = (
        f"Turnout benchmarks  {doc['started']}  commit {(doc['host']['git_commit'] or '?')[:10]}"
        f"{' (dirty)' if doc['host']['git_dirty'] else ''}\n"
        f"loadgen {doc['loadgen']['name']} x{o['threads']} (bundled: {o.get('processes', 1)} "
        f"processes), backend {doc['backend']['version']}"
        f" (uploads: {doc['backend'].get('uploads', '?')}), "
        f"{o['repetitions']} x {o['duration_s']:g} s (+{o['warmup_s']:g} s warm-up), medians; "
        f"{doc['host']['cpus']} CPUs, {doc['host']['cpu_model'] or 'unknown CPU'}"
    )
    skipped = [
        f"{n} ({t['reason']})" for n, t in doc["targets"].items() if t["status"] == "skipped"
    ]
    failed = [
        f"{n} ({', '.join(t['errors'])})" for n, t in doc["targets"].items() if t.get("errors")
    ]
    parts = [head]
    if skipped:
        parts.append("skipped: " + "; ".join(skipped))
    if failed:
        parts.append("did not start: " + ", ".join(failed) + " (see stderr)")
    if doc.get("interrupted"):
        parts.append(f"INCOMPLETE: {doc['interrupted']}")
    for sc in doc["scenarios"]:
        parts.append("")
        parts.append(scenario_table(sc, (doc.get("host") or {}).get("cpus")))
    parts.append("")
    parts.append(
        "CPU s/10k: the proxy's user+system CPU seconds per 10,000 requests (messages, "
        "transfers); RSS: peak resident memory (VmHWM) of the proxy's processes; "
        "MiB/s in tcp-bulk: 1 MiB transfers per second; GiB/s in tcp-gib: 1 GiB transfers per "
        "second on one connection."
    )
    return "\n".join(parts)


def stamp(doc: dict[str, Any]) -> str:
    return datetime.fromisoformat(doc["started"]).strftime("%Y%m%d-%H%M%S")


def save(doc: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp(doc)}.json"
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    path.write_text(text)
    latest = results_dir / "latest.json"
    tmp = results_dir / ".latest.json.tmp"
    tmp.write_text(text)
    tmp.replace(latest)
    return path


def save_chart(doc: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path | None:
    """Draw the PNG chart next to the JSON (and latest.png); None without matplotlib."""
    from benchmarks import chart

    path = chart.draw(doc, results_dir / f"{stamp(doc)}.png")
    if path is not None:
        import shutil

        shutil.copyfile(path, results_dir / "latest.png")
    return path
