"""The compiled hot path (proxy/native.py, scripts/compile_native.py).

`make` compiles the modules in proxy.native.COMPILED with mypyc; the rest
of the suite then runs against the compiled modules. These tests check which
build runs and that a stale build never runs in place of edited sources. In CI
(CI=true) the compiled build must be there: a failed compilation fails here
instead of passing the suite on the sources unnoticed.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import native

REPO = Path(__file__).resolve().parent.parent
TURNOUT = Path(sys.executable).parent / "turnout"
IN_CI = os.environ.get("CI") == "true"


def _needs_build() -> None:
    if native.built():
        return
    if IN_CI:
        pytest.fail("the hot path is not compiled (scripts/compile_native.py failed?) and CI=true")
    pytest.skip("the hot path is not compiled here: run `make` (needs gcc and python3-dev)")


def _run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # `python -c` puts the working directory first on sys.path: it is the tree tested.
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd or REPO,
    )


def _where(pythonpath: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = (
        "import proxy.http.server as s, proxy.http.exchange as e, proxy.http.upstream as u; "
        "print(s.__file__); print(e.__file__); print(u.__file__)"
    )
    return _run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(pythonpath), **(env or {})},
        cwd=pythonpath,
    )


def test_the_suite_runs_the_compiled_modules() -> None:
    _needs_build()
    result = _run([str(TURNOUT), "version"])
    assert result.returncode == 0, result.stderr
    assert f"hot path: compiled with mypyc ({len(native.COMPILED)} modules)" in result.stdout
    assert result.stderr == ""
    for module in native.COMPILED:
        assert str(importlib.import_module(module).__file__).endswith(".so"), module


def test_turnout_pure_runs_the_sources() -> None:
    _needs_build()
    result = _run([str(TURNOUT), "version"], env={"TURNOUT_PURE": "1"})
    assert "hot path: Python sources (TURNOUT_PURE=1)" in result.stdout
    where = _where(REPO, env={"TURNOUT_PURE": "1"})
    assert where.returncode == 0, where.stderr
    assert [Path(line).suffix for line in where.stdout.split()] == [".py", ".py", ".py"]


def test_an_edited_source_is_not_shadowed_by_its_old_build(tmp_path: Path) -> None:
    _needs_build()
    copy = tmp_path / "proxy"
    shutil.copytree(REPO / "proxy", copy, ignore=shutil.ignore_patterns("__pycache__"))
    where = _where(tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(copy)) for line in where.stdout.split()), where.stdout
    assert all(line.endswith(".so") for line in where.stdout.split()), where.stdout
    # An edit that changes behaviour: the copy's sources must now be what runs.
    exchange = copy / "http" / "exchange.py"
    exchange.write_text(exchange.read_text() + "\nEDITED = True\n")
    code = "import proxy.http.exchange as e; print(e.__file__, e.EDITED)"
    result = _run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(exchange), "True"]
    assert "running the sources. `make` rebuilds it." in result.stderr
