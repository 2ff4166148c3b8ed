"""Turn a run's JSON document into a table on stdout, and save it under results/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.record import NOISY_CORES

RESULTS_DIR = Path(__file__).resolve().parent / "results"

COLUMNS = ("target", "req/s", "p50 ms", "p99 ms", "CPU s/10k", "RSS MiB", "vs direct")


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def scenario_table(sc: dict[str, Any]) -> str:
    ratios: dict[str, float] = sc["ratio_to_direct"]
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for name, tr in sc["targets"].items():
        m = tr["median"]
        if m is None:
            reason = (tr["error"] or "no successful run").splitlines()[0]
            rows.append((name, "failed", "", "", "", "", ""))
            notes.append(f"  {name}: {reason}")
            continue
        rss = m["peak_rss_bytes"]
        rows.append(
            (
                name,
                _f(m["requests_per_s"], ",.0f"),
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
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)
    ]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{first}  {rest}"

    s = sc["scenario"]
    out = [
        f"== {s['name']}: {s['description']}, {sc['connections']} connections",
        line(COLUMNS),
        line(tuple("-" * w for w in widths)),
    ]
    out += [line(r) for r in rows]
    vs = sc["turnout_vs_peers"]
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
            out.append(f"  vs {peer:<8} " + ", ".join(parts))
    if notes:
        out.append("notes:")
        out += notes
    return "\n".join(out)


def render(doc: dict[str, Any]) -> str:
    o = doc["options"]
    head = (
        f"Turnout benchmarks  {doc['started']}  commit {(doc['host']['git_commit'] or '?')[:10]}"
        f"{' (dirty)' if doc['host']['git_dirty'] else ''}\n"
        f"loadgen {doc['loadgen']['name']} x{o['threads']}, backend {doc['backend']['version']}, "
        f"{o['repetitions']} x {o['duration_s']:g} s (+{o['warmup_s']:g} s warm-up), medians; "
        f"{doc['host']['cpus']} CPUs, {doc['host']['cpu_model'] or 'unknown CPU'}"
    )
    skipped = [
        f"{n} ({t['reason']})" for n, t in doc["targets"].items() if t["status"] == "skipped"
    ]
    failed = [n for n, t in doc["targets"].items() if t["status"] == "failed"]
    parts = [head]
    if skipped:
        parts.append("skipped: " + "; ".join(skipped))
    if failed:
        parts.append("did not start: " + ", ".join(failed) + " (see stderr)")
    if doc.get("interrupted"):
        parts.append(f"INCOMPLETE: {doc['interrupted']}")
    for sc in doc["scenarios"]:
        parts.append("")
        parts.append(scenario_table(sc))
    parts.append("")
    parts.append(
        "CPU s/10k: the proxy's user+system CPU seconds per 10,000 requests; "
        "RSS: peak resident memory (VmHWM)."
    )
    return "\n".join(parts)


def save(doc: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["started"]).strftime("%Y%m%d-%H%M%S")
    path = results_dir / f"{stamp}.json"
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    path.write_text(text)
    latest = results_dir / "latest.json"
    tmp = results_dir / ".latest.json.tmp"
    tmp.write_text(text)
    tmp.replace(latest)
    return path
