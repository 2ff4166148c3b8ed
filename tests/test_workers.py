"""`turnout run --workers N`: real worker processes behind a real supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import REPO, free_port, get, wait_for_port


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def start(tmp_path: Path, workers: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    (tmp_path / "dynamic.toml").write_text(
        '[http.routers.w]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
    )
    static = tmp_path / "static.toml"
    static.write_text(
        f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n'
        f'[providers.file]\nfilename = "{tmp_path / "dynamic.toml"}"\nwatch = false\n'
        '[log]\nlevel = "INFO"\n'
    )
    stderr = tmp_path / "stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "-c", str(static), "--workers", str(workers)],
        cwd=REPO,
        stderr=stderr.open("wb"),
    )
    wait_for_port(port)
    return process, port, stderr


def test_workers_share_the_port_restart_and_drain(tmp_path: Path) -> None:
    process, port, stderr = start(tmp_path, 2)
    try:
        assert wait_until(lambda: len(children(process.pid)) == 2, 5), stderr.read_text()
        for _ in range(20):
            assert get(port).status == 200
        # Both workers listen: each has its own socket bound to the same port.
        assert wait_until(
            lambda: stderr.read_text().count(f"listening on 127.0.0.1:{port}") == 2, 5
        ), stderr.read_text()
        # A worker that dies is replaced, and the port keeps answering meanwhile.
        victim = children(process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(
            lambda: len(children(process.pid)) == 2 and victim not in children(process.pid), 5
        ), stderr.read_text()
        assert get(port).status == 200
        assert "restarting" in stderr.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    assert code == 0, stderr.read_text()
    log = stderr.read_text()
    assert log.count("stopped") == 2, log
    assert "Traceback" not in log


def test_worker_start_failure_stops_the_supervisor(tmp_path: Path) -> None:
    # The port is taken by a plain socket (no SO_REUSEPORT): workers cannot bind.
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    static = tmp_path / "static.toml"
    static.write_text(f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n')
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "run", "-c", str(static), "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    blocker.close()
    assert result.returncode == 1, result.stderr
    assert f"{static}: entryPoints.web.address: cannot listen" in result.stderr
    assert time.monotonic() - started < 10


def test_bad_worker_count_is_a_command_line_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "run", "--workers", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
