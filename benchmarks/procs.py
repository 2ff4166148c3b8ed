"""Process helpers: free ports, readiness checks, /proc accounting, stopping by pid.

Everything here talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = 4096


class StartError(RuntimeError):
    """A server did not come up; the message carries its stderr."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str | None:
    """`name` on PATH, or in the sbin directories a non-root PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def python_env() -> dict[str, str]:
    """Environment for child Pythons that must import the `benchmarks` package."""
    env = dict(os.environ)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pp if pp else "")
    return env


def python_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


@dataclass(slots=True)
class HttpReply:
    status: int
    body: bytes
    headers: dict[str, str] | None = None  # lower-cased names


def http_get(
    port: int,
    path: str = "/",
    timeout: float = 2.0,
    host: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> HttpReply:
    """One request over a fresh connection, bounded by `timeout` (GET unless told)."""
    import http.client

    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host or f"{LOOPBACK}:{port}"})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return HttpReply(resp.status, resp.read(), headers)
    finally:
        conn.close()


def tcp_echo(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    """Connect, send `payload`, read back as many bytes (an echo check), bounded."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def set_affinity(pids: Sequence[int], cpus: set[int]) -> None:
    """Pin every thread of `pids` and their descendants to `cpus` (like `taskset -a -p`)."""
    for root in pids:
        for pid in process_tree(root):
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, cpus)


def rss_bytes(pid: int) -> int:
    """VmRSS (current resident set) of one process, in bytes (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pids: Sequence[int]) -> int:
    return sum(rss_bytes(p) for root in pids for p in process_tree(root))


def raise_fd_limit(want: int = 65536) -> int:
    """Raise our RLIMIT_NOFILE (children inherit it) towards `want`; return the soft limit.

    As root the hard limit is raised too (proxies holding 10,000 idle connections
    need about twice that many descriptors); otherwise the soft limit goes up to the
    hard one.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


class Server:
    """A child process we started, logged to files, stopped by its process id.

    The child gets its own session, so it is its own process group: a terminal
    Ctrl-C reaches only us, and `stop` can also reach any workers it forked.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        workdir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        err = tail(self.stderr_path)
        out = tail(self.stdout_path)
        parts = [p for p in (err, out) if p]
        return "\n".join(parts) if parts else "(no output)"

    def _exited(self, port: int) -> StartError:
        return StartError(
            f"{self.name} exited with code {self.proc.returncode} before answering "
            f"on {LOOPBACK}:{port}\ncommand: {' '.join(self.cmd)}\n"
            f"--- output ---\n{self.output()}"
        )

    def wait_tcp(self, port: int, timeout: float = 15.0, echo: bool = True) -> None:
        """Poll until `port` accepts a connection (and echoes a few bytes, if `echo`)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running():
                raise self._exited(port)
            try:
                if echo:
                    got = tcp_echo(port, b"ping", timeout=1.0)
                    if got == b"ping":
                        return
                    last = f"echoed {got!r}"
                else:
                    with socket.create_connection((LOOPBACK, port), timeout=1.0):
                        return
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise StartError(
            f"{self.name} did not {'echo' if echo else 'accept'} on {LOOPBACK}:{port} within "
            f"{timeout:.0f}s (last: {last})\ncommand: {' '.join(self.cmd)}\n"
            f"--- output ---\n{self.output()}"
        )

    def wait_http(
        self,
        port: int,
        path: str = "/",
        timeout: float = 15.0,
        want_status: int | None = 200,
        host: str | None = None,
    ) -> HttpReply:
        """Poll until `port` answers a GET (with `want_status` if given)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running():
                raise self._exited(port)
            try:
                reply = http_get(port, path, timeout=1.0, host=host)
            except (OSError, ValueError) as exc:  # http.client errors are OSError/ValueError
                last = f"{type(exc).__name__}: {exc}"
            else:
                if want_status is None or reply.status == want_status:
                    return reply
                last = f"HTTP {reply.status}: {reply.body[:200]!r}"
            time.sleep(0.05)
        raise StartError(
            f"{self.name} did not answer GET {path} with {want_status or 'anything'} on "
            f"{LOOPBACK}:{port} within {timeout:.0f}s (last: {last})\n"
            f"command: {' '.join(self.cmd)}\n--- output ---\n{self.output()}"
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group we created, then SIGKILL after `grace` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        # Whatever is left in the group (the leader, or workers it forked) gets SIGKILL.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)


def run_bounded(
    cmd: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool (load generator) with a hard timeout, killing it on any exit."""
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


# --- /proc accounting -------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (bounded by the process table)."""
    kids = _children_map()
    tree: list[int] = []
    todo = [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        tree.append(p)
        todo.extend(kids.get(p, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is index 0; utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for root in pids:
        for p in process_tree(root):
            total += cpu_seconds(p)
    return total


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of one process, in bytes (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_peak_rss_bytes(pids: Sequence[int]) -> int:
    return sum(peak_rss_bytes(p) for root in pids for p in process_tree(root))


def system_cpu_seconds() -> float:
    """CPU seconds spent busy (not idle or iowait) by all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """User + system CPU of our reaped children (load generators), cumulative."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_cores(interval: float = 0.5) -> float:
    """How many CPUs' worth of work the machine is doing right now (sampled)."""
    before = system_cpu_seconds()
    time.sleep(interval)
    return (system_cpu_seconds() - before) / interval
