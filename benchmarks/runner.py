"""Start the backend and targets, run every scenario interleaved, collect medians."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import loadgen, wrk
from benchmarks.backends import Backend, choose_backend
from benchmarks.procs import (
    REPO_ROOT,
    StartError,
    busy_cores,
    children_cpu_seconds,
    http_get,
    system_cpu_seconds,
    tree_cpu_seconds,
    tree_peak_rss_bytes,
)
from benchmarks.record import NOISY_CORES, LoadResult
from benchmarks.scenarios import Scenario
from benchmarks.targets import Target

# Bounds used by the run-time estimate (seconds).
RUN_OVERHEAD = {"wrk": 0.2, "bundled": 0.6}  # loadgen process start/stop per run
START_OVERHEAD = 1.5  # per started process (backend, each proxy)


@dataclass(slots=True)
class Options:
    scenarios: list[Scenario]
    targets: list[Target]
    duration: float = 10.0
    repetitions: int = 3
    connections: int = 50
    warmup: float = 1.0
    loadgen: str = "auto"  # auto | wrk | bundled
    threads: int = 1  # wrk threads / bundled loadgen processes
    backend: str = "auto"  # auto | nginx | bundled
    keep_tmp: bool = False
    max_minutes: float = 60.0

    def resolved_loadgen(self) -> str:
        if self.loadgen == "auto":
            return "wrk" if wrk.available() else "bundled"
        return self.loadgen

    def run_seconds(self) -> float:
        duration = self.duration
        warmup = self.warmup
        if self.resolved_loadgen() == "wrk":  # wrk takes whole seconds
            duration = max(1, round(duration))
            warmup = max(1, round(warmup)) if warmup > 0 else 0
        overhead = RUN_OVERHEAD[self.resolved_loadgen()]
        return duration + warmup + overhead * (2 if warmup > 0 else 1)

    def estimate_seconds(self) -> float:
        runs = len(self.scenarios) * len(self.targets) * self.repetitions
        starts = 1 + sum(1 for t in self.targets if t.is_proxy)
        return runs * self.run_seconds() + starts * START_OVERHEAD

    def to_json(self) -> dict[str, Any]:
        return {
            "scenarios": [s.name for s in self.scenarios],
            "targets": [t.name for t in self.targets],
            "duration_s": self.duration,
            "repetitions": self.repetitions,
            "connections": self.connections,
            "warmup_s": self.warmup,
            "loadgen": self.resolved_loadgen(),
            "threads": self.threads,
            "backend": self.backend,
        }


@dataclass(slots=True)
class Run:
    """One measured load run of one target."""

    repetition: int
    load: LoadResult | None
    cpu_s: float | None = None  # proxy CPU seconds during the run
    backend_cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    loadgen_cpu_s: float | None = None
    wall_s: float | None = None
    # CPUs' worth of work done during the run by processes other than the proxy, the
    # backend and the load generator: other people's work on a shared machine.
    foreign_cores: float | None = None
    error: str | None = None

    @property
    def cpu_s_per_10k(self) -> float | None:
        if self.cpu_s is None or self.load is None or self.load.requests <= 0:
            return None
        return self.cpu_s / self.load.requests * 10_000

    @property
    def backend_cpu_s_per_10k(self) -> float | None:
        if self.backend_cpu_s is None or self.load is None or self.load.requests <= 0:
            return None
        return self.backend_cpu_s / self.load.requests * 10_000

    def to_json(self) -> dict[str, Any]:
        return {
            "repetition": self.repetition,
            "load": self.load.to_json() if self.load else None,
            "cpu_s": self.cpu_s,
            "cpu_s_per_10k": self.cpu_s_per_10k,
            "backend_cpu_s_per_10k": self.backend_cpu_s_per_10k,
            "peak_rss_bytes": self.peak_rss_bytes,
            "loadgen_cpu_s": self.loadgen_cpu_s,
            "wall_s": self.wall_s,
            "foreign_cores": self.foreign_cores,
            "error": self.error,
        }


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


@dataclass(slots=True)
class TargetResult:
    target: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None  # set when the target could not be measured at all

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.load is not None and r.error is None]

    def median(self) -> dict[str, Any] | None:
        ok = self.ok_runs()
        if not ok:
            return None
        rss = [r.peak_rss_bytes for r in ok if r.peak_rss_bytes]
        return {
            "requests_per_s": _median([r.load.requests_per_s for r in ok if r.load]),
            "p50_us": _median([r.load.p50_us for r in ok if r.load]),
            "p99_us": _median([r.load.p99_us for r in ok if r.load]),
            "cpu_s_per_10k": _median([r.cpu_s_per_10k for r in ok]),
            "backend_cpu_s_per_10k": _median([r.backend_cpu_s_per_10k for r in ok]),
            "peak_rss_bytes": max(rss) if rss else None,
            "foreign_cores": _median([r.foreign_cores for r in ok]),
            "errors": sum(r.load.errors for r in ok if r.load),
            "non_2xx": sum(r.load.non_2xx for r in ok if r.load),
            "runs": len(ok),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "median": self.median(),
            "runs": [r.to_json() for r in self.runs],
        }


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    connections: int
    results: dict[str, TargetResult] = field(default_factory=dict)

    def medians(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, tr in self.results.items():
            m = tr.median()
            if m is not None:
                out[name] = m
        return out

    def ratios_to_direct(self) -> dict[str, float]:
        med = self.medians()
        base = med.get("direct", {}).get("requests_per_s")
        if not base:
            return {}
        return {n: m["requests_per_s"] / base for n, m in med.items() if m["requests_per_s"]}

    def turnout_vs_peers(self) -> dict[str, dict[str, float | None]]:
        med = self.medians()
        t = med.get("turnout")
        if t is None:
            return {}
        out: dict[str, dict[str, float | None]] = {}
        for name, m in med.items():
            if name in ("turnout", "direct"):
                continue
            out[name] = {
                "requests_per_s": _ratio(t["requests_per_s"], m["requests_per_s"]),
                "cpu_per_request": _ratio(t["cpu_s_per_10k"], m["cpu_s_per_10k"]),
                "p50": _ratio(t["p50_us"], m["p50_us"]),
                "p99": _ratio(t["p99_us"], m["p99_us"]),
                "peak_rss": _ratio(t["peak_rss_bytes"], m["peak_rss_bytes"]),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_json(),
            "connections": self.connections,
            "targets": {n: tr.to_json() for n, tr in self.results.items()},
            "ratio_to_direct": self.ratios_to_direct(),
            "turnout_vs_peers": self.turnout_vs_peers(),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def _cmd_out(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def host_info() -> dict[str, Any]:
    cpu = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = _cmd_out(["git", "rev-parse", "HEAD"], REPO_ROOT)
    dirty = _cmd_out(["git", "status", "--porcelain", "--untracked-files=no"], REPO_ROOT)
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, opts: Options, log: Log = _stderr_log) -> None:
        self.opts = opts
        self.log = log
        self.backend: Backend = choose_backend(opts.backend)
        self.loadgen = opts.resolved_loadgen()
        self.target_status: dict[str, dict[str, Any]] = {}
        self.started: list[Target] = []
        self.failed = False
        self.tmp: Path | None = None
        self.busy_before: float | None = None

    # -- load ----------------------------------------------------------------------
    def _load(self, url: str, connections: int, duration: float, keepalive: bool) -> LoadResult:
        if self.loadgen == "wrk":
            return wrk.run(url, connections, duration, self.opts.threads, keepalive)
        return loadgen.run(url, connections, duration, self.opts.threads, keepalive)

    def _measure(self, target: Target, sc: Scenario, rep: int, conns: int) -> Run:
        url = target.url(sc.path)
        pids = target.pids()
        bpid = [self.backend.pid] if self.backend.pid else []
        try:
            if self.opts.warmup > 0:
                self._load(url, conns, self.opts.warmup, sc.keepalive)
            w0, sys0, lg0 = time.monotonic(), system_cpu_seconds(), children_cpu_seconds()
            cpu0 = tree_cpu_seconds(pids)
            bcpu0 = tree_cpu_seconds(bpid)
            load = self._load(url, conns, self.opts.duration, sc.keepalive)
            cpu1 = tree_cpu_seconds(pids)
            bcpu1 = tree_cpu_seconds(bpid)
            w1, sys1, lg1 = time.monotonic(), system_cpu_seconds(), children_cpu_seconds()
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            return Run(rep, None, error=f"{type(exc).__name__}: {exc}")
        ours = (cpu1 - cpu0) + (bcpu1 - bcpu0) + (lg1 - lg0)
        run = Run(
            rep,
            load,
            cpu_s=(cpu1 - cpu0) if pids else None,
            backend_cpu_s=(bcpu1 - bcpu0) if bpid else None,
            peak_rss_bytes=tree_peak_rss_bytes(pids) if pids else None,
            loadgen_cpu_s=lg1 - lg0,
            wall_s=w1 - w0,
            foreign_cores=max(0.0, (sys1 - sys0) - ours) / (w1 - w0) if w1 > w0 else None,
        )
        if not target.alive():
            run.error = f"{target.name} exited during the run:\n{target.output()}"
        return run

    # -- lifecycle -----------------------------------------------------------------
    def _start_all(self, tmp: Path) -> None:
        self.busy_before = busy_cores(0.5)
        if self.busy_before > NOISY_CORES:
            self.log(
                f"warning: the machine is already busy ({self.busy_before:.1f} of "
                f"{os.cpu_count()} CPUs in use before starting); results will be noisy"
            )
        self.log(f"starting backend ({self.backend.name}) ...")
        self.backend.start(tmp)
        for t in self.opts.targets:
            reason = t.unavailable()
            if reason:
                self.target_status[t.name] = {"status": "skipped", "reason": reason}
                self.log(f"skipping {t.name}: {reason}")
                continue
            try:
                t.start(tmp, self.backend)
            except (StartError, OSError) as exc:
                self.failed = True
                self.target_status[t.name] = {"status": "failed", "reason": str(exc)}
                self.log(f"ERROR: {t.name} did not start:\n{exc}")
                t.stop()
                continue
            self.started.append(t)
            self.target_status[t.name] = {
                "status": "ok",
                "version": t.version(),
                "command": t.command_line(),
                "port": t.port,
            }
            if t.is_proxy:
                self.log(f"started {t.name} on port {t.port} (pid {t.pids()[0]})")

    def _stop_all(self) -> None:
        for t in reversed(self.started):
            with contextlib.suppress(Exception):
                t.stop()
        with contextlib.suppress(Exception):
            self.backend.stop()

    def _check(self, target: Target, sc: Scenario) -> str | None:
        try:
            reply = http_get(target.port, sc.path, timeout=5.0)
        except (OSError, ValueError) as exc:
            return f"GET {sc.path} failed: {type(exc).__name__}: {exc}"
        if reply.status != 200:
            return f"GET {sc.path} answered {reply.status}: {reply.body[:200]!r}"
        return sc.check_body(reply.body)

    def run(self) -> dict[str, Any]:
        opts = self.opts
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        # Hard bound on the whole run: the estimate plus a generous margin.
        deadline = t0 + opts.estimate_seconds() * 1.5 + 120
        scenario_results: list[ScenarioResult] = []
        interrupted = None
        self.tmp = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
        try:
            self._start_all(self.tmp)
            for sc in opts.scenarios:
                conns = sc.conns(opts.connections)
                sr = ScenarioResult(sc, conns)
                scenario_results.append(sr)
                active: list[Target] = []
                for t in self.started:
                    problem = self._check(t, sc)
                    if problem:
                        self.failed = True
                        sr.results[t.name] = TargetResult(t.name, error=problem)
                        self.log(f"ERROR: [{sc.name}] {t.name}: {problem}")
                    else:
                        sr.results[t.name] = TargetResult(t.name)
                        active.append(t)
                for rep in range(opts.repetitions):
                    for t in active:
                        if time.monotonic() > deadline:
                            raise TimeoutError("benchmark exceeded its time bound")
                        tr = sr.results[t.name]
                        if tr.error:
                            continue
                        run = self._measure(t, sc, rep, conns)
                        tr.runs.append(run)
                        self.log(_progress(sc, rep, opts.repetitions, t.name, run))
                        if run.error and not t.alive():
                            tr.error = run.error
                            self.failed = True
        except TimeoutError as exc:
            interrupted = str(exc)
            self.failed = True
            self.log(f"ERROR: {exc}; reporting what was measured")
        finally:
            self._stop_all()
            if self.tmp is not None and not opts.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
        if any(tr.median() is None for sr in scenario_results for tr in sr.results.values()):
            self.failed = True  # some target has no successful run in some scenario
        return {
            "format": 1,
            "started": started_at.isoformat(timespec="seconds"),
            "elapsed_s": round(time.monotonic() - t0, 1),
            "interrupted": interrupted,
            "host": {**host_info(), "busy_cores_before": round(self.busy_before or 0, 2)},
            "options": opts.to_json(),
            "loadgen": {"name": self.loadgen, "version": _loadgen_version(self.loadgen)},
            "backend": {"name": self.backend.name, "version": _backend_version(self.backend)},
            "targets": self.target_status,
            "tmpdir": str(self.tmp) if opts.keep_tmp else None,
            "scenarios": [sr.to_json() for sr in scenario_results],
        }


def _progress(sc: Scenario, rep: int, reps: int, name: str, run: Run) -> str:
    head = f"[{sc.name} {rep + 1}/{reps}] {name:<8}"
    if run.load is None:
        return f"{head} FAILED: {run.error}"
    ld = run.load
    cpu = f", CPU {run.cpu_s_per_10k:.3f} s/10k" if run.cpu_s_per_10k is not None else ""
    errs = f", errors {ld.errors}" if ld.errors else ""
    non = f", non-2xx {ld.non_2xx}" if ld.non_2xx else ""
    msg = (
        f"{head} {ld.requests_per_s:>10,.0f} req/s  p50 {ld.p50_us / 1000:.3f} ms  "
        f"p99 {ld.p99_us / 1000:.3f} ms{cpu}{errs}{non}"
    )
    if run.foreign_cores is not None and run.foreign_cores > NOISY_CORES:
        msg += f"  (noisy: other processes used ~{run.foreign_cores:.1f} CPUs)"
    if run.error:
        msg += f"\n  ERROR: {run.error}"
    return msg


def _loadgen_version(name: str) -> str:
    if name == "wrk":
        path = wrk.available()
        if path:
            try:
                p = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=5)
                return (p.stdout + p.stderr).strip().splitlines()[0]
            except (OSError, subprocess.TimeoutExpired, IndexError):
                pass
        return "unknown"
    return "bundled (uvloop + httptools)"


def _backend_version(backend: Backend) -> str:
    if backend.name == "nginx":
        from benchmarks.procs import find_binary

        nginx = find_binary("nginx")
        if nginx:
            try:
                p = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=5)
                return (p.stderr or p.stdout).strip()
            except (OSError, subprocess.TimeoutExpired):
                pass
        return "nginx"
    return "bundled (uvloop + httptools)"
