"""Turnout processes started with a static file of the test's own (not the harness')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.harness import REPO, free_port, wait_for_port


def check(static: Path) -> subprocess.CompletedProcess[str]:
    """``turnout check -c static`` as a real process."""
    return cli("check", static)


def cli(command: str, static: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", command, "-c", str(static)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def start(tmp_path: Path, dynamic: str, static_extra: str, *, stdout: int | None = None):  # type: ignore[no-untyped-def]
    """``turnout run`` on entry point ``web`` (a free port) and a file provider; (process, port).

    Stop it with ``process.terminate()``; it must exit 0.
    """
    port = free_port()
    dynamic_path = tmp_path / "dynamic.toml"
    dynamic_path.write_text(dynamic)
    static = tmp_path / "static.toml"
    static.write_text(
        f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n'
        f'[providers.file]\nfilename = "{dynamic_path}"\n{static_extra}'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "-c", str(static)],
        cwd=REPO,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process, port
