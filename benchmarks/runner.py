"""Start the backends and targets, run every scenario interleaved, collect medians.

Scenarios are run in groups of consecutive scenarios that share a setup (see
scenarios.SETUPS) and pinning: the targets are started for a group, every scenario
of the group is run with the targets interleaved per repetition, and the targets
are stopped before the next group. Backends live for the whole run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import select
import shutil
import socket
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
from benchmarks.backends import Backends, NginxBackend, Ports, pg_args, postgres_tool
from benchmarks.procs import (
    LOOPBACK,
    REPO_ROOT,
    StartError,
    busy_cores,
    children_cpu_seconds,
    find_binary,
    http_get,
    python_env,
    raise_fd_limit,
    run_bounded,
    set_affinity,
    system_cpu_seconds,
    tcp_echo,
    tree_cpu_seconds,
    tree_peak_rss_bytes,
    tree_rss_bytes,
)
from benchmarks.record import NOISY_CORES, LoadResult
from benchmarks.scenarios import Scenario
from benchmarks.targets import START_TIMEOUT_10K, TURNOUT_NOT_YET, Setup, Target, Turnout
from benchmarks.ws_backend import accept_key, client_frame, parse_head, server_frame_size

# Bounds used by the run-time estimate (seconds).
RUN_OVERHEAD = {"wrk": 0.2, "bundled": 0.6}  # loadgen process start/stop per run
START_OVERHEAD = 1.5  # per started process (backend, each proxy, per setup)
SETUP_EXTRA = {"routers-10k": 12.0}  # per proxy start: 10,000 routes to compile
IDLE_OVERHEAD = 3.0  # per idle-heavy run: opening and closing the idle connections
CHECK_OVERHEAD = 2.0  # per `turnout check` in the preflight
PROXY_CPU = 0  # pinned runs: the proxy's CPU; load generator and backends get OTHER_CPU
OTHER_CPU = 1


@dataclass(slots=True)
class Options:
    scenarios: list[Scenario]
    targets: list[Target]
    duration: float = 10.0
    repetitions: int = 3
    connections: int = 50
    warmup: float = 1.0
    loadgen: str = "auto"  # auto | wrk | bundled
    threads: int = 1  # wrk threads
    # Bundled generator processes: it is Python, about half as fast per core as wrk,
    # so it gets two processes where wrk gets one thread (else it is the limit).
    processes: int = 2
    backend: str = "auto"  # auto | nginx | bundled
    keep_tmp: bool = False
    max_minutes: float = 60.0
    idle_connections: int = 1000
    pin: bool = False  # pin every scenario (the `pinned` scenario is pinned anyway)
    peers_when_turnout_skips: bool = False  # run peers of scenarios skipped for Turnout

    def resolved_loadgen(self) -> str:
        if self.loadgen == "auto":
            return "wrk" if wrk.available() else "bundled"
        return self.loadgen

    def effective_scenarios(self) -> list[Scenario]:
        if not self.pin:
            return list(self.scenarios)
        return [dataclasses.replace(s, pinned=True) for s in self.scenarios]

    def loadgen_for(self, sc: Scenario) -> str:
        """wrk only speaks HTTP: WebSocket and TCP scenarios use the bundled generator."""
        return self.resolved_loadgen() if sc.kind == "http" else "bundled"

    def run_seconds(self, sc: Scenario) -> float:
        lg = self.loadgen_for(sc)
        duration = self.duration
        warmup = self.warmup
        if lg == "wrk":  # wrk takes whole seconds
            duration = max(1, round(duration))
            warmup = max(1, round(warmup)) if warmup > 0 else 0
        overhead = RUN_OVERHEAD[lg] * (2 if warmup > 0 else 1)
        if sc.idle:
            overhead += IDLE_OVERHEAD * max(1.0, self.idle_connections / 2000)
        return duration + warmup + overhead

    def estimate_seconds(self, skipped: dict[str, str] | None = None) -> float:
        """Seconds for the run; `skipped`: setup -> why Turnout cannot run it yet."""
        skipped = skipped or {}
        total = START_OVERHEAD  # backends
        for setup, group in group_scenarios(self.effective_scenarios()):
            running = [
                t
                for t in self.targets
                if t.unavailable() is None and t.supports(setup.name) is None
            ]
            if setup.name in skipped:
                if self.peers_when_turnout_skips or not group[0].skip_all_without_turnout:
                    running = [t for t in running if not isinstance(t, Turnout)]
                else:
                    continue
            proxies = sum(1 for t in running if t.is_proxy)
            total += proxies * (START_OVERHEAD + SETUP_EXTRA.get(setup.name, 0.0))
            total += sum(len(running) * self.repetitions * self.run_seconds(sc) for sc in group)
        total += CHECK_OVERHEAD * len(
            {s.setup for s in self.scenarios if s.setup in TURNOUT_NOT_YET}
        )
        return total

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
            "processes": self.processes,
            "backend": self.backend,
            "idle_connections": self.idle_connections,
            "pin": self.pin,
        }


def group_scenarios(scenarios: list[Scenario]) -> list[tuple[Setup, list[Scenario]]]:
    """Consecutive scenarios sharing a setup, pinning and idleness, with that setup."""
    groups: list[tuple[Setup, list[Scenario]]] = []
    for sc in scenarios:
        setup = Setup(sc.setup, sc.pinned, sc.idle)
        if groups and groups[-1][0].key == setup.key:
            groups[-1][1].append(sc)
        else:
            groups.append((setup, [sc]))
    return groups


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
    idle: dict[str, Any] | None = None  # idle-heavy runs: connections held, RSS

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
            "idle": self.idle,
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
    skipped: str | None = None  # n/a here, or not built yet: why (not a failure)

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.load is not None and r.error is None]

    def median(self) -> dict[str, Any] | None:
        ok = self.ok_runs()
        if not ok:
            return None
        rss = [r.peak_rss_bytes for r in ok if r.peak_rss_bytes]
        m: dict[str, Any] = {
            "requests_per_s": _median([r.load.requests_per_s for r in ok if r.load]),
            "requests_per_s_min": min(r.load.requests_per_s for r in ok if r.load),
            "requests_per_s_max": max(r.load.requests_per_s for r in ok if r.load),
            "p50_us": _median([r.load.p50_us for r in ok if r.load]),
            "p99_us": _median([r.load.p99_us for r in ok if r.load]),
            "cpu_s_per_10k": _median([r.cpu_s_per_10k for r in ok]),
            "backend_cpu_s_per_10k": _median([r.backend_cpu_s_per_10k for r in ok]),
            "peak_rss_bytes": max(rss) if rss else None,
            "foreign_cores": _median([r.foreign_cores for r in ok]),
            # CPUs' worth the load generator used: near its thread count, it was the limit.
            "loadgen_cores": _median(
                [r.loadgen_cpu_s / r.wall_s for r in ok if r.loadgen_cpu_s and r.wall_s]
            ),
            "errors": sum(r.load.errors for r in ok if r.load),
            "non_2xx": sum(r.load.non_2xx for r in ok if r.load),
            "runs": len(ok),
        }
        idle = [r.idle for r in ok if r.idle]
        if idle:
            deltas = [
                i["rss_with_idle_bytes"] - i["rss_before_idle_bytes"]
                for i in idle
                if i.get("rss_with_idle_bytes") and i.get("rss_before_idle_bytes")
            ]
            m["idle_connections"] = min(i["ready"] for i in idle)
            m["idle_still_open"] = min(i.get("still_open", 0) for i in idle)
            # The first run pays for the connections; later ones reuse freed memory.
            m["idle_rss_delta_bytes"] = max(deltas) if deltas else None
            rss_idle = [i["rss_with_idle_bytes"] for i in idle if i.get("rss_with_idle_bytes")]
            m["idle_rss_bytes"] = max(rss_idle) if rss_idle else None
        return m

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "skipped": self.skipped,
            "median": self.median(),
            "runs": [r.to_json() for r in self.runs],
        }


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    connections: int
    results: dict[str, TargetResult] = field(default_factory=dict)
    skipped: str | None = None  # the whole scenario was skipped: why
    idle_connections: int = 0
    loadgen: str = ""
    loadgen_threads: int = 1

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
            "idle_connections": self.idle_connections,
            "loadgen": self.loadgen,
            "loadgen_threads": self.loadgen_threads,
            "skipped": self.skipped,
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


# --- checks before measuring ------------------------------------------------------


def ws_echo_check(port: int, path: str, size: int, timeout: float = 5.0) -> str | None:
    """A real WebSocket handshake and one echoed message; why it failed, or None."""
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                return f"connection closed during the handshake: {buf[:200]!r}"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        line, headers = parse_head(head)
        if not line.startswith(b"HTTP/1.1 101"):
            return f"handshake answered {line!r}"
        if headers.get(b"sec-websocket-accept") != accept_key(key):
            return "wrong Sec-WebSocket-Accept"
        payload = os.urandom(size)
        s.sendall(client_frame(payload))
        want = server_frame_size(size)
        while len(rest) < want:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                return "connection closed before the echo"
            rest += chunk
        if rest[0] != 0x82 or not rest.endswith(payload) or len(rest) != want:
            return f"unexpected echo frame {rest[:20]!r}..."
    return None


def bulk_timeout(size: int) -> float:
    """Seconds allowed for one bulk transfer: 5, or more at a slow 100 MiB/s."""
    return max(5.0, size / (100 << 20))


def tcp_bulk_check(port: int, size: int, timeout: float = 5.0) -> str | None:
    timeout = max(timeout, bulk_timeout(size))
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(loadgen.bulk_request(size))
        got = 0
        while got < size:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(1 << 20)
            if not chunk:
                return f"connection closed after {got} of {size} bytes"
            got += len(chunk)
    return None if got == size else f"got {got} bytes, expected {size}"


def pgbench_check(port: int) -> str | None:
    psql = postgres_tool("psql")
    if psql is None:
        return "psql is not installed"
    done = run_bounded([psql, *pg_args(port), "-d", "postgres", "-tAc", "select 6 * 7"], 30)
    return None if done.stdout.strip() == "42" else f"psql: {done.stderr.strip()[:200]}"


def pgbench_run(port: int, clients: int, duration: float, prefix: list[str]) -> LoadResult:
    """``pgbench -S`` for ``duration`` seconds: TPS as the rate, latency percentiles from
    pgbench's per-transaction log (``-l``). Failed transactions (or a non-zero exit) are errors.
    """
    pgbench = postgres_tool("pgbench")
    if pgbench is None:
        raise RuntimeError("pgbench is not installed")
    seconds = max(1, round(duration))
    cmd = [*prefix, pgbench, "-S", "-n", "-l", "-T", str(seconds), "-c", str(clients), "-j", "2"]
    logs = Path(tempfile.mkdtemp(prefix="turnout-bench-pgbench-"))
    try:
        done = run_bounded([*cmd, *pg_args(port), "postgres"], seconds + 60, cwd=logs)
        latencies = sorted(
            int(line.split()[2])
            for log in logs.glob("pgbench_log.*")
            for line in log.read_text().splitlines()
            if line.strip()
        )
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    out = done.stdout
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    tps = re.search(r"tps = ([\d.]+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if done.returncode != 0 or processed is None or tps is None or not latencies:
        raise RuntimeError(f"pgbench failed: {(done.stderr or out).strip()[:300]}")
    return LoadResult(
        tool="pgbench",
        requests=int(processed.group(1)),
        duration_s=float(seconds),
        requests_per_s=float(tps.group(1)),
        p50_us=float(latencies[len(latencies) // 2]),
        p99_us=float(latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]),
        errors=int(failed.group(1)) if failed else 0,
        extra={"clients": clients},
    )


def check_target(port: int, sc: Scenario, is_proxy: bool = False) -> str | None:
    """Why `port` does not answer `sc`'s request as expected (None if it does)."""
    try:
        if sc.kind == "ws":
            return ws_echo_check(port, sc.path, sc.message_size)
        if sc.kind == "tcp-echo":
            payload = os.urandom(sc.message_size)
            got = tcp_echo(port, payload, timeout=5.0)
            return None if got == payload else f"echoed {len(got)} bytes, not the message"
        if sc.kind == "tcp-bulk":
            return tcp_bulk_check(port, sc.message_size)
        if sc.kind == "pgbench":
            return pgbench_check(port)
        body = b"x" * sc.request_body_size if sc.request_body_size else None
        reply = http_get(
            port, sc.path, timeout=5.0, host=sc.host_header, method=sc.method, body=body
        )
    except (OSError, ValueError) as exc:
        return f"{sc.method if sc.kind == 'http' else sc.kind} {sc.path} failed: " + (
            f"{type(exc).__name__}: {exc}"
        )
    if reply.status != 200:
        return f"{sc.method} {sc.path} answered {reply.status}: {reply.body[:200]!r}"
    if is_proxy and sc.proxy_header:
        name, value = sc.proxy_header
        got = (reply.headers or {}).get(name)
        if got != value:
            return f"response header {name}: expected {value!r}, got {got!r}"
    if is_proxy and sc.unrouted_host:
        with contextlib.suppress(OSError, ValueError):  # refusing it any way is fine
            other = http_get(port, sc.path, timeout=5.0, host=sc.unrouted_host)
            # (Caddy answers an unmatched request with an empty 200: not routed.)
            if other.status == 200 and sc.check_body(other.body) is None:
                return f"Host {sc.unrouted_host} reached the backend: a catch-all, not a table"
    return sc.check_body(reply.body)


# --- idle connections -------------------------------------------------------------


class IdleHolder:
    """`python -m benchmarks.idle` holding N idle keep-alive connections, bounded."""

    def __init__(self, url: str, count: int, host_header: str | None, prefix: list[str]) -> None:
        cmd = [*prefix, sys.executable, "-m", "benchmarks.idle", url, "--count", str(count)]
        if host_header:
            cmd += ["--host-header", host_header]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=python_env(),
            start_new_session=True,
        )

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"idle connection holder silent for {timeout:.0f}s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"idle connection holder exited: {err.strip()[-2000:]}")
        return dict(json.loads(line))

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        return self._line(timeout)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            return self._line(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


# --- the run ----------------------------------------------------------------------


class Runner:
    def __init__(self, opts: Options, log: Log = _stderr_log) -> None:
        self.opts = opts
        self.log = log
        self.scenarios = opts.effective_scenarios()
        self.pg_missing: str | None = None  # why pgbench-select cannot run here
        max_conns = opts.connections + (
            opts.idle_connections if any(s.idle for s in self.scenarios) else 0
        )
        self.max_connections = max_conns
        # The backend also holds every proxy's idle upstream connections: room for both.
        self.backends = Backends(opts.backend, connections=max(8192, 2 * max_conns + 1000))
        self.loadgen = opts.resolved_loadgen()
        self.target_status: dict[str, dict[str, Any]] = {}
        self.failed = False
        self.tmp: Path | None = None
        self.busy_before: float | None = None
        self.turnout_skips: dict[str, str] | None = None  # setup -> reason
        self.all_cpus = set(os.sched_getaffinity(0))
        self.holders: list[IdleHolder] = []

    # -- preflight -----------------------------------------------------------------
    def preflight(self) -> dict[str, str]:
        """`turnout check` each setup Turnout may not run yet; setup -> why not."""
        if self.turnout_skips is not None:
            return self.turnout_skips
        skips: dict[str, str] = {}
        setups = sorted({s.setup for s in self.scenarios if s.setup in TURNOUT_NOT_YET})
        if setups:
            tmp = Path(tempfile.mkdtemp(prefix="turnout-bench-check-"))
            try:
                for name in setups:
                    # Placeholder ports: `turnout check` does not connect anywhere.
                    setup = Setup(name, ports=Ports(http=1, ws=1, tcp_echo=1, tcp_bulk=1))
                    reason = Turnout().check_support(tmp / name, setup)
                    if reason:
                        skips[name] = reason
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for name, reason in skips.items():
            scs = [s for s in self.scenarios if s.setup == name]
            whole = [s.name for s in scs if s.skip_all_without_turnout]
            if whole and not self.opts.peers_when_turnout_skips:
                self.log(f"skipping scenario {', '.join(whole)}: {reason}")
            rest = [
                s.name for s in scs if s.name not in whole or self.opts.peers_when_turnout_skips
            ]
            if rest:
                self.log(f"{', '.join(rest)}: turnout skipped ({reason}); peers still measured")
        self.turnout_skips = skips
        return skips

    def estimate_seconds(self) -> float:
        return self.opts.estimate_seconds(self.preflight())

    # -- load ----------------------------------------------------------------------
    def _pin_prefix(self, pinned: bool) -> list[str]:
        if not pinned:
            return []
        taskset = find_binary("taskset")
        if taskset is None:
            raise StartError("pinned run: `taskset` (util-linux) is not installed")
        return [taskset, "-c", str(OTHER_CPU)]

    def _load(self, target: Target, sc: Scenario, conns: int, duration: float) -> LoadResult:
        port = target.port_for(sc)
        prefix = self._pin_prefix(sc.pinned)
        if sc.kind == "pgbench":
            return pgbench_run(port, conns, duration, prefix)
        if self.opts.loadgen_for(sc) == "wrk":
            return wrk.run(
                f"http://{LOOPBACK}:{port}{sc.path}",
                conns,
                duration,
                self.opts.threads,
                sc.keepalive,
                method=sc.method,
                body_size=sc.request_body_size,
                host_header=sc.host_header,
                prefix=prefix,
            )
        spec = loadgen.Spec(
            mode=sc.kind,
            host=LOOPBACK,
            port=port,
            path=sc.path,
            connections=conns,
            duration=duration,
            keepalive=sc.keepalive,
            method=sc.method,
            body_size=sc.request_body_size,
            host_header=sc.host_header,
            message_size=sc.message_size or 64,
            timeout=bulk_timeout(sc.message_size) if sc.kind == "tcp-bulk" else 5.0,
        )
        return loadgen.run_spec(spec, self.opts.processes, prefix)

    def _measure(self, target: Target, sc: Scenario, rep: int, conns: int) -> Run:
        pids = target.pids()
        bpids = self.backends.pids()
        holder = None
        idle: dict[str, Any] | None = None
        try:
            if sc.idle:
                idle = {"rss_before_idle_bytes": tree_rss_bytes(pids) if pids else None}
                holder = IdleHolder(
                    f"http://{LOOPBACK}:{target.port_for(sc)}{sc.path}",
                    self.opts.idle_connections,
                    sc.host_header,
                    self._pin_prefix(sc.pinned),
                )
                self.holders.append(holder)
                idle.update(holder.wait_ready(timeout=60.0))
                time.sleep(0.2)  # let the proxy settle before reading its memory
                idle["rss_with_idle_bytes"] = tree_rss_bytes(pids) if pids else None
            if self.opts.warmup > 0:
                self._load(target, sc, conns, self.opts.warmup)
            w0, sys0, lg0 = time.monotonic(), system_cpu_seconds(), children_cpu_seconds()
            cpu0 = tree_cpu_seconds(pids)
            bcpu0 = tree_cpu_seconds(bpids)
            load = self._load(target, sc, conns, self.opts.duration)
            cpu1 = tree_cpu_seconds(pids)
            bcpu1 = tree_cpu_seconds(bpids)
            w1, sys1, lg1 = time.monotonic(), system_cpu_seconds(), children_cpu_seconds()
            if holder is not None and idle is not None:
                idle.update(holder.stop())
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            return Run(rep, None, error=f"{type(exc).__name__}: {exc}", idle=idle)
        finally:
            if holder is not None:
                holder.kill()
                self.holders.remove(holder)
        ours = (cpu1 - cpu0) + (bcpu1 - bcpu0) + (lg1 - lg0)
        run = Run(
            rep,
            load,
            cpu_s=(cpu1 - cpu0) if pids else None,
            backend_cpu_s=(bcpu1 - bcpu0) if bpids else None,
            peak_rss_bytes=tree_peak_rss_bytes(pids) if pids else None,
            loadgen_cpu_s=lg1 - lg0,
            wall_s=w1 - w0,
            foreign_cores=max(0.0, (sys1 - sys0) - ours) / (w1 - w0) if w1 > w0 else None,
            idle=idle,
        )
        if idle is not None and idle.get("failed"):
            run.error = f"{idle['failed']} of {self.opts.idle_connections} idle connections failed"
            if target.note:
                run.error += f" ({target.note})"
        if not target.alive():
            run.error = f"{target.name} exited during the run:\n{target.output()}"
        return run

    # -- lifecycle -----------------------------------------------------------------
    def _start_backends(self, tmp: Path) -> None:
        self.busy_before = busy_cores(0.5)
        if self.busy_before > NOISY_CORES:
            self.log(
                f"warning: the machine is already busy ({self.busy_before:.1f} of "
                f"{os.cpu_count()} CPUs in use before starting); results will be noisy"
            )
        names = {s.setup for s in self.scenarios}
        self.log(f"starting backends ({self.backends.http.describe()}) ...")
        pg = any(s.kind == "pgbench" for s in self.scenarios)
        if pg and not all(postgres_tool(n) for n in ("initdb", "postgres", "pgbench", "psql")):
            pg = False
            self.pg_missing = "PostgreSQL is not installed (apt-get install postgresql)"
            self.log(f"skipping scenario pgbench-select: {self.pg_missing}")
        self.backends.start(tmp, ws="websocket" in names, tcp="tcp" in names, pg=pg)

    def _start_targets(self, tmp: Path, setup: Setup, skip_turnout: bool) -> list[Target]:
        started: list[Target] = []
        for t in self.opts.targets:
            if self.target_status.get(t.name, {}).get("status") == "skipped":
                continue
            reason = t.unavailable()
            if reason:
                self.target_status[t.name] = {"status": "skipped", "reason": reason}
                self.log(f"skipping {t.name}: {reason}")
                continue
            if t.supports(setup.name) is not None or (skip_turnout and isinstance(t, Turnout)):
                continue
            if setup.name == "routers-10k" and t.is_proxy:
                self.log(f"starting {t.name} with 10,000 routers (up to {START_TIMEOUT_10K:.0f}s)")
            try:
                t.start(tmp, setup)
            except (StartError, OSError) as exc:
                self.failed = True
                status = self.target_status.setdefault(t.name, {"status": "ok", "commands": {}})
                status.setdefault("errors", {})[setup.key] = str(exc)
                self.log(f"ERROR: {t.name} did not start for {setup.key}:\n{exc}")
                t.stop()
                continue
            started.append(t)
            status = self.target_status.setdefault(t.name, {"status": "ok", "commands": {}})
            status["version"] = t.version()
            status.setdefault("commands", {})[setup.key] = t.command_line()
            if t.is_proxy:
                self.log(f"started {t.name} for {setup.key} on {t.ports} (pid {t.pids()[0]})")
            if t.note:
                status.setdefault("notes", {})[setup.key] = t.note
                self.log(f"note: {t.name}: {t.note}")
        return started

    def _pin_backends(self, pinned: bool) -> None:
        cpus = {OTHER_CPU} if pinned else self.all_cpus
        set_affinity(self.backends.pids(), cpus)

    def _run_group(
        self,
        tmp: Path,
        setup: Setup,
        group: list[Scenario],
        deadline: float,
        results: list[ScenarioResult],
    ) -> None:
        """Run one group, appending its scenarios' results to `results` as they start."""
        opts = self.opts
        skips = self.preflight()
        turnout_skip = skips.get(setup.name)
        mine: list[ScenarioResult] = []
        for sc in group:
            sr = ScenarioResult(
                sc,
                sc.conns(opts.connections),
                idle_connections=opts.idle_connections if sc.idle else 0,
                loadgen=opts.loadgen_for(sc),
                loadgen_threads=opts.threads if opts.loadgen_for(sc) == "wrk" else opts.processes,
            )
            if turnout_skip and sc.skip_all_without_turnout and not opts.peers_when_turnout_skips:
                sr.skipped = turnout_skip
            elif sc.kind == "pgbench" and self.pg_missing:
                sr.skipped = self.pg_missing
            mine.append(sr)
            results.append(sr)
        live = [sr for sr in mine if sr.skipped is None]
        if not live:
            return
        if setup.pinned and len(self.all_cpus) < 2:
            for sr in live:
                sr.skipped = "pinning needs at least 2 CPUs"
            return
        setup = dataclasses.replace(
            setup,
            ports=self.backends.ports(),
            max_connections=self.max_connections,
            proxy_cpu=PROXY_CPU,
        )
        self._pin_backends(setup.pinned)
        started = self._start_targets(tmp, setup, skip_turnout=turnout_skip is not None)
        try:
            for sr in live:
                self._run_scenario(sr, started, setup, turnout_skip, deadline)
        finally:
            for t in reversed(started):
                with contextlib.suppress(Exception):
                    t.stop()
            if setup.pinned:
                self._pin_backends(False)

    def _run_scenario(
        self,
        sr: ScenarioResult,
        started: list[Target],
        setup: Setup,
        turnout_skip: str | None,
        deadline: float,
    ) -> None:
        sc = sr.scenario
        active: list[Target] = []
        for t in self.opts.targets:
            if self.target_status.get(t.name, {}).get("status") == "skipped":
                continue
            na = t.supports(setup.name)
            if na is not None:
                sr.results[t.name] = TargetResult(t.name, skipped=f"n/a: {na}")
                continue
            if turnout_skip and isinstance(t, Turnout):
                sr.results[t.name] = TargetResult(t.name, skipped=turnout_skip)
                continue
            if t not in started:
                err = self.target_status.get(t.name, {}).get("errors", {}).get(setup.key)
                sr.results[t.name] = TargetResult(t.name, error=err or "did not start")
                continue
            problem = check_target(t.port_for(sc), sc, t.is_proxy)
            if problem:
                self.failed = True
                sr.results[t.name] = TargetResult(t.name, error=problem)
                self.log(f"ERROR: [{sc.name}] {t.name}: {problem}")
            else:
                sr.results[t.name] = TargetResult(t.name)
                active.append(t)
        for rep in range(self.opts.repetitions):
            for t in active:
                if time.monotonic() > deadline:
                    raise TimeoutError("benchmark exceeded its time bound")
                tr = sr.results[t.name]
                if tr.error:
                    continue
                run = self._measure(t, sc, rep, sr.connections)
                tr.runs.append(run)
                self.log(_progress(sc, rep, self.opts.repetitions, t.name, run))
                if run.error and not t.alive():
                    tr.error = run.error
                    self.failed = True

    def run(self) -> dict[str, Any]:
        opts = self.opts
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        raise_fd_limit()
        # Hard bound on the whole run: the estimate plus a generous margin.
        deadline = t0 + self.estimate_seconds() * 1.5 + 120
        scenario_results: list[ScenarioResult] = []
        interrupted = None
        self.tmp = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
        try:
            self._start_backends(self.tmp)
            for setup, group in group_scenarios(self.scenarios):
                self._run_group(self.tmp, setup, group, deadline, scenario_results)
        except TimeoutError as exc:
            interrupted = str(exc)
            self.failed = True
            self.log(f"ERROR: {exc}; reporting what was measured")
        finally:
            for h in list(self.holders):
                h.kill()
            for t in opts.targets:
                with contextlib.suppress(Exception):
                    t.stop()
            with contextlib.suppress(Exception):
                self.backends.stop()
            if self.tmp is not None and not opts.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
        for sr in scenario_results:
            if sr.skipped is None and any(
                tr.skipped is None and tr.median() is None for tr in sr.results.values()
            ):
                self.failed = True  # some target has no successful run in some scenario
        http = self.backends.http
        return {
            "format": 2,
            "started": started_at.isoformat(timespec="seconds"),
            "elapsed_s": round(time.monotonic() - t0, 1),
            "interrupted": interrupted,
            "host": {**host_info(), "busy_cores_before": round(self.busy_before or 0, 2)},
            "options": opts.to_json(),
            "loadgen": {"name": self.loadgen, "version": _loadgen_version(self.loadgen)},
            "backend": {
                "name": http.name,
                "version": _backend_version(http.name),
                "uploads": http.upload_mode if isinstance(http, NginxBackend) else "read",
                "websocket": "bundled (ws_backend.py)" if self.backends.ws else None,
                "tcp": "bundled (tcp_backend.py)" if self.backends.tcp else None,
            },
            "targets": self.target_status,
            "tmpdir": str(self.tmp) if opts.keep_tmp else None,
            "scenarios": [sr.to_json() for sr in scenario_results],
        }


def _progress(sc: Scenario, rep: int, reps: int, name: str, run: Run) -> str:
    head = f"[{sc.name} {rep + 1}/{reps}] {name:<10}"
    if run.load is None:
        return f"{head} FAILED: {run.error}"
    ld = run.load
    cpu = f", CPU {run.cpu_s_per_10k:.3f} s/10k" if run.cpu_s_per_10k is not None else ""
    errs = f", errors {ld.errors}" if ld.errors else ""
    non = f", non-2xx {ld.non_2xx}" if ld.non_2xx else ""
    decimals = 0 if ld.requests_per_s >= 100 else 2  # GiB/s
    msg = (
        f"{head} {ld.requests_per_s:>10,.{decimals}f} {sc.unit}  p50 {ld.p50_us / 1000:.3f} ms  "
        f"p99 {ld.p99_us / 1000:.3f} ms{cpu}{errs}{non}"
    )
    if run.idle and run.idle.get("rss_with_idle_bytes") and run.idle.get("rss_before_idle_bytes"):
        delta = run.idle["rss_with_idle_bytes"] - run.idle["rss_before_idle_bytes"]
        msg += f", {run.idle.get('ready', 0)} idle conns: RSS +{delta / 2**20:.1f} MiB"
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


def _backend_version(name: str) -> str:
    if name == "nginx":
        nginx = find_binary("nginx")
        if nginx:
            try:
                p = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=5)
                return (p.stderr or p.stdout).strip()
            except (OSError, subprocess.TimeoutExpired):
                pass
        return "nginx"
    return "bundled (uvloop + httptools)"
