"""Draw a run's results as a PNG: one subplot per scenario, one bar per target.

Bars are the median rate in the scenario's own unit (requests/s, messages/s,
MiB/s) with a whisker from the slowest to the fastest repetition, labelled with
the ratio to `direct`; targets that were skipped or n/a in a scenario are named
under the axis instead of drawn. matplotlib is an optional dependency (the `bench`
extra): without it `draw` returns None and the caller says how to get it.

Redraw a saved run: python -m benchmarks.chart benchmarks/results/latest.json [-o out.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "no chart: matplotlib is not installed; get it with "
    "`.venv/bin/pip install -e '.[bench]'` (or `pip install matplotlib`)"
)

# One colour per target, stable across runs (others get the default cycle).
COLOURS = {
    "direct": "#9e9e9e",
    "turnout": "#1f77b4",
    "turnout-w2": "#6baed6",
    "haproxy": "#2ca02c",
    "nginx": "#ff7f0e",
    "caddy": "#d62728",
    "caddy-2": "#f4a6a6",
}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(doc: dict[str, Any], path: Path) -> Path | None:
    """Write the chart of `doc` to `path`; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    scenarios = doc["scenarios"]
    if not scenarios:
        return None
    ncols = min(3, len(scenarios))
    nrows = math.ceil(len(scenarios) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[len(scenarios) :]:
        ax.set_visible(False)
    for ax, sc in zip(axes.flat, scenarios, strict=False):
        _subplot(ax, sc)
    o = doc["options"]
    host = doc["host"]
    fig.suptitle(
        f"Turnout benchmarks {doc['started']}  commit {(host.get('git_commit') or '?')[:10]}"
        f"{' (dirty)' if host.get('git_dirty') else ''}\n"
        f"medians of {o['repetitions']} x {o['duration_s']:g} s, {host.get('cpus')} CPUs, "
        f"loadgen {doc['loadgen']['name']}, backend {doc['backend']['name']}"
        f"{'; machine busy before start' if (host.get('busy_cores_before') or 0) > 0.5 else ''}",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _subplot(ax: Any, sc: dict[str, Any]) -> None:
    s = sc["scenario"]
    unit = s.get("unit", "req/s")
    title = s["name"] + (" (pinned)" if s.get("pinned") else "")
    ax.set_title(title, fontsize=10, fontweight="bold")
    ax.tick_params(labelsize=8)
    if sc.get("skipped"):
        ax.text(
            0.5,
            0.5,
            f"skipped:\n{sc['skipped']}",
            ha="center",
            va="center",
            fontsize=9,
            transform=ax.transAxes,
            wrap=True,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    names: list[str] = []
    values: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    missing: list[str] = []
    for name, tr in sc["targets"].items():
        m = tr.get("median")
        if tr.get("skipped") or m is None:
            missing.append(f"{name}: {'n/a' if tr.get('skipped') else 'failed'}")
            continue
        v = m["requests_per_s"] or 0.0
        names.append(name)
        values.append(v)
        lows.append(max(0.0, v - (m.get("requests_per_s_min") or v)))
        highs.append(max(0.0, (m.get("requests_per_s_max") or v) - v))
    ax.set_ylabel(unit, fontsize=9)
    colours = [COLOURS.get(n, f"C{i}") for i, n in enumerate(names)]
    xs = range(len(names))
    ax.bar(xs, values, color=colours, yerr=[lows, highs], capsize=3, ecolor="#444444")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ratios = sc.get("ratio_to_direct") or {}
    top = max(values) if values else 1.0
    for x, name, v in zip(xs, names, values, strict=True):
        label = f"{v:,.0f}"
        if name in ratios and name != "direct":
            label += f"\n{ratios[name]:.2f}x"
        ax.text(x, v + top * 0.02, label, ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.grid(axis="y", alpha=0.3)
    if missing:
        ax.text(
            0.99,
            0.98,
            "\n".join(missing),
            ha="right",
            va="top",
            fontsize=7,
            color="#666666",
            transform=ax.transAxes,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.chart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("json", type=Path, help="a results JSON file")
    ap.add_argument("-o", "--output", type=Path, help="PNG path (default: next to the JSON)")
    args = ap.parse_args(argv)
    doc = json.loads(args.json.read_text())
    out = args.output or args.json.with_suffix(".png")
    if draw(doc, out) is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
