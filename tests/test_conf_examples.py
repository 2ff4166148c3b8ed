"""Every example configuration in conf/ passes `turnout check`, without warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "conf"
EXAMPLES = sorted(CONF.glob("*/static.*"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("static", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_checks_clean(static: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-c", static.name],
        cwd=static.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK:")
    assert result.stderr == ""
