"""Run wrk and parse its `--latency` output into a LoadResult.

POST bodies go through a Lua script (`wrk.method`, `wrk.body`; wrk adds the
Content-Length) written into a temporary directory for the run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from benchmarks.procs import find_binary, run_bounded
from benchmarks.record import LoadResult

_TIME_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_NUM_TIME = r"([0-9.]+)(us|ms|s|m|h)"

_RE_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in " + _NUM_TIME + r",", re.M)
_RE_PCT = re.compile(r"^\s*([0-9.]+)%\s+" + _NUM_TIME + r"\s*$", re.M)
_RE_SOCK = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_RE_HEADER = re.compile(r"(\d+) threads and (\d+) connections")


class WrkParseError(ValueError):
    pass


def time_us(value: str, unit: str) -> float:
    return round(float(value) * _TIME_UNITS[unit], 3)


def parse(output: str) -> LoadResult:
    """Parse wrk's text output (run with --latency). Raises WrkParseError if incomplete."""
    m_rps = _RE_RPS.search(output)
    m_total = _RE_TOTAL.search(output)
    if not m_rps or not m_total:
        raise WrkParseError(f"no request summary in wrk output:\n{output[-2000:]}")
    pct = {float(p): time_us(v, u) for p, v, u in _RE_PCT.findall(output)}
    if 50.0 not in pct or 99.0 not in pct:
        raise WrkParseError(f"no latency distribution (run wrk with --latency):\n{output[-2000:]}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m_sock = _RE_SOCK.search(output)
    if m_sock:
        errors = dict(zip(errors, map(int, m_sock.groups()), strict=True))
    m_non = _RE_NON2XX.search(output)
    extra: dict[str, object] = {"socket_errors": errors}
    extra.update(
        {
            f"p{int(p) if p.is_integer() else p}_us": v
            for p, v in pct.items()
            if p not in (50.0, 99.0)
        }
    )
    m_head = _RE_HEADER.search(output)
    if m_head:
        extra["threads"], extra["connections"] = int(m_head[1]), int(m_head[2])
    return LoadResult(
        tool="wrk",
        requests=int(m_total[1]),
        duration_s=time_us(m_total[2], m_total[3]) / 1e6,
        requests_per_s=float(m_rps[1]),
        p50_us=pct[50.0],
        p99_us=pct[99.0],
        errors=sum(errors.values()),
        non_2xx=int(m_non[1]) if m_non else 0,
        extra=extra,
    )


def available() -> str | None:
    return find_binary("wrk")


def lua_script(method: str, body_size: int) -> str:
    """A wrk script sending `method` with a `body_size`-byte body."""
    return (
        f'wrk.method = "{method}"\n'
        f'wrk.body = string.rep("x", {int(body_size)})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def command(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    keepalive: bool = True,
    host_header: str | None = None,
    script: Path | None = None,
) -> list[str]:
    wrk = available()
    if wrk is None:
        raise FileNotFoundError("wrk is not installed")
    threads = max(1, min(threads, connections))
    secs = max(1, round(duration))  # wrk takes whole seconds
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{secs}s", "--latency"]
    if not keepalive:
        cmd += ["-H", "Connection: close"]
    if host_header:
        cmd += ["-H", f"Host: {host_header}"]
    if script is not None:
        cmd += ["-s", str(script)]
    return [*cmd, url]


def run(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    keepalive: bool = True,
    method: str = "GET",
    body_size: int = 0,
    host_header: str | None = None,
    prefix: list[str] | None = None,
) -> LoadResult:
    """Run wrk once (its command prefixed by `prefix`, e.g. taskset) and parse it."""
    tmp = None
    try:
        script = None
        if method != "GET" or body_size:
            tmp = Path(tempfile.mkdtemp(prefix="turnout-wrk-"))
            script = tmp / "request.lua"
            script.write_text(lua_script(method, body_size))
        cmd = command(url, connections, duration, threads, keepalive, host_header, script)
        proc = run_bounded([*(prefix or []), *cmd], timeout=duration + 30.0)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    result = parse(proc.stdout)
    result.extra["raw"] = proc.stdout
    if body_size:
        result.extra["request_body_size"] = body_size
    return result
