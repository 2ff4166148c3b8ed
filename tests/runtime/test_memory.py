"""malloc tuning: applied on glibc, skipped when turned off; measured in PERFORMANCE.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Turnout

GLIBC = platform.libc_ver()[0] == "glibc"


def _in_child(env_value: str) -> str:
    # A child process, so the settings of the test runner's own malloc stay as they were.
    code = "from proxy.runtime.memory import tune_malloc; print(tune_malloc())"
    env = dict(os.environ, TURNOUT_MALLOC_TUNING=env_value)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_applied_on_glibc() -> None:
    assert _in_child("1") == "True"


def test_turned_off_by_environment() -> None:
    assert _in_child("0") == "False"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_turnout_run_applies_it(tmp_path: Path) -> None:
    turnout = Turnout(tmp_path, "").start()
    try:
        assert "malloc tuning applied" in turnout.stderr()
    finally:
        assert turnout.stop() == 0
