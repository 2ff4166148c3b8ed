"""python -m benchmarks: Turnout against the bare backend and peer proxies.

Starts the backends (nginx if installed, else the bundled uvloop server; the
bundled WebSocket and TCP servers when needed) and each target on free 127.0.0.1
ports in a temporary directory, runs every scenario with the targets interleaved
per repetition, prints a table of medians and saves JSON and a PNG chart to
benchmarks/results/ (timestamped, and latest.json / latest.png). Nothing is
asserted about speed. Exit status: 0 ok, 1 a target failed to start or to serve,
2 bad command line or a run over --max-minutes, 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from benchmarks import chart, report, wrk
from benchmarks.procs import StartError, find_binary
from benchmarks.runner import Options, Runner
from benchmarks.scenarios import DEFAULT_SCENARIOS, SCENARIOS, get_scenarios
from benchmarks.targets import TARGET_NAMES, TARGETS, Turnout, make_targets


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _fmt_secs(s: float) -> str:
    s = round(s)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--scenarios",
        type=_csv,
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, from: {', '.join(s.name for s in SCENARIOS)} "
        "(default: all); run in that order, whatever order is given",
    )
    ap.add_argument(
        "--targets",
        type=_csv,
        default=TARGET_NAMES,
        help=f"comma-separated, from: {', '.join(TARGET_NAMES)} (default: all; "
        "those not installed are skipped)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin every scenario: the proxy on CPU 0 (taskset), load generator and "
        "backends on CPU 1 (the `pinned` scenario is pinned anyway)",
    )
    ap.add_argument(
        "--idle-connections",
        type=int,
        default=1000,
        metavar="N",
        help="idle keep-alive connections held during idle-heavy (default 1000, max 10000)",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    ap.add_argument("--repetitions", type=int, default=3, help="runs per target (default 3)")
    ap.add_argument(
        "--connections", type=int, default=50, help="concurrent connections (default 50)"
    )
    ap.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of unmeasured load before each run (default 1, 0 = none)",
    )
    ap.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "bundled"),
        default="auto",
        help="wrk if installed (auto), or the bundled uvloop generator",
    )
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument(
        "--processes",
        type=int,
        default=2,
        help="bundled load generator processes (default 2: it is Python, about half as "
        "fast per core as wrk; it always drives WebSocket and TCP)",
    )
    ap.add_argument(
        "--backend",
        choices=("auto", "nginx", "bundled"),
        default="auto",
        help="nginx if installed (auto), or the bundled uvloop backend",
    )
    ap.add_argument(
        "--turnout-args",
        default="",
        metavar="ARGS",
        help='extra arguments for `turnout run`, e.g. --turnout-args="--workers 2"',
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=60.0,
        help="refuse to start when the estimated run time exceeds this (default 60)",
    )
    ap.add_argument(
        "--results-dir",
        type=Path,
        default=report.RESULTS_DIR,
        help="where to write JSON (default benchmarks/results)",
    )
    ap.add_argument("--no-save", action="store_true", help="print only; write no JSON or PNG")
    ap.add_argument("--no-chart", action="store_true", help="write the JSON but no PNG chart")
    ap.add_argument(
        "--peers-when-turnout-skips",
        action="store_true",
        help="still measure the peers in scenarios skipped because Turnout cannot run "
        "them yet (middlewares)",
    )
    ap.add_argument(
        "--keep-tmp",
        action="store_true",
        help="keep the temporary directory (configs, logs) for inspection",
    )
    ap.add_argument("--list", action="store_true", help="list scenarios and targets, then exit")
    return ap


def _list() -> None:
    print("scenarios (setup):")
    for s in SCENARIOS:
        print(f"   {s.name:<12} {s.description} ({s.setup})")
    print("targets:")
    for cls in TARGETS:
        t = cls()
        reason = t.unavailable()
        na = [f"{s}: {r}" for s in ("tcp", "routers-10k") if (r := t.supports(s))]
        state = "available" if reason is None else "unavailable: " + reason
        print(f"   {cls.name:<12} {state}{'; n/a ' + '; '.join(na) if na else ''}")
    print(
        f"loadgen auto -> {'wrk' if wrk.available() else 'bundled'} (WebSocket and TCP: "
        f"bundled); backend auto -> {'nginx' if find_binary('nginx') else 'bundled'}; "
        f"chart: {'matplotlib' if chart.available() else 'none (' + chart.INSTALL_HINT + ')'}"
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.list:
        _list()
        return 0
    try:
        scenarios = get_scenarios(args.scenarios)
        targets = make_targets(args.targets)
    except ValueError as exc:
        ap.error(str(exc))
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600] seconds")
    if not 0 <= args.warmup <= 60:
        ap.error("--warmup must be in [0, 60] seconds")
    if not 1 <= args.repetitions <= 50:
        ap.error("--repetitions must be in [1, 50]")
    if not 1 <= args.connections <= 10000:
        ap.error("--connections must be in [1, 10000]")
    if not 1 <= args.threads <= 64 or not 1 <= args.processes <= 64:
        ap.error("--threads and --processes must be in [1, 64]")
    if not 1 <= args.idle_connections <= 10000:
        ap.error("--idle-connections must be in [1, 10000]")
    if not 0 < args.max_minutes <= 24 * 60:
        ap.error("--max-minutes must be in (0, 1440]")
    if not targets:
        ap.error("no targets selected")
    for t in targets:
        if isinstance(t, Turnout):
            t.extra_args = tuple(shlex.split(args.turnout_args))
    if args.loadgen == "wrk" and not wrk.available():
        ap.error("--loadgen wrk: wrk is not installed")
    if args.backend == "nginx" and not find_binary("nginx"):
        ap.error("--backend nginx: nginx is not installed")

    opts = Options(
        scenarios=scenarios,
        targets=targets,
        duration=args.duration,
        repetitions=args.repetitions,
        connections=args.connections,
        warmup=args.warmup,
        loadgen=args.loadgen,
        threads=args.threads,
        processes=args.processes,
        backend=args.backend,
        keep_tmp=args.keep_tmp,
        max_minutes=args.max_minutes,
        idle_connections=args.idle_connections,
        pin=args.pin,
        peers_when_turnout_skips=args.peers_when_turnout_skips,
    )
    runnable = [t for t in targets if t.unavailable() is None]
    for t in targets:
        if t not in runnable:
            print(f"skipping {t.name}: {t.unavailable()}", file=sys.stderr)
    try:
        runner = Runner(opts)
        estimate = runner.estimate_seconds()  # runs `turnout check` for gated setups
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Estimated run time: ~{_fmt_secs(estimate)} "
        f"({len(scenarios)} scenario(s) x up to {len(runnable)} target(s) x {args.repetitions} "
        f"repetition(s) x ({args.duration:g} s + {args.warmup:g} s warm-up), plus starts); "
        f"loadgen {opts.resolved_loadgen()}",
        file=sys.stderr,
        flush=True,
    )
    if estimate > args.max_minutes * 60:
        print(
            f"error: that exceeds --max-minutes {args.max_minutes:g}; lower --duration or "
            "--repetitions, or raise --max-minutes",
            file=sys.stderr,
        )
        return 2

    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    old_hup = signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        doc = runner.run()
    except KeyboardInterrupt:
        print("\ninterrupted; all started processes were stopped", file=sys.stderr)
        return 130
    except StartError as exc:
        print(f"error: the backend did not start:\n{exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)

    print(report.render(doc))
    if not args.no_save:
        path = report.save(doc, args.results_dir)
        print(f"\nsaved {path} (and latest.json)")
        if not args.no_chart:
            try:
                png = report.save_chart(doc, args.results_dir)
            except Exception as exc:  # a chart must never fail the run
                print(f"no chart: drawing failed: {type(exc).__name__}: {exc}")
            else:
                print(f"saved {png} (and latest.png)" if png else chart.INSTALL_HINT)
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
