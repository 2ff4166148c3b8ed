"""Which build of the hot path runs: the mypyc-compiled modules, or their Python sources.

`make` compiles the modules in COMPILED (scripts/compile_native.py) into C
extensions beside their sources, and records the sources' digests in a stamp.
Python imports an extension before a source of the same name, so an extension
built from older sources would run silently in place of an edited file; this
module, imported by ``proxy.http`` before any of them, loads the sources
instead when the stamp does not match them (saying so once on stderr), or when
``TURNOUT_PURE=1`` asks for it (profilers such as cProfile and py-spy see into
Python functions, not compiled ones).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = "proxy.http"
COMPILED = ("server", "exchange", "upstream")
HERE = Path(__file__).resolve().parent / "http"
STAMP = HERE / ".native-sources"

_state = "pure"  # "compiled", "pure", "stale" or "forced pure"


def source(name: str) -> Path:
    return HERE / f"{name}.py"


def built() -> list[Path]:
    """The extensions (and their mypyc runtime libraries) present beside the sources."""
    return sorted(p for name in COMPILED for p in HERE.glob(f"{name}*{_suffix()}"))


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _digests() -> str:
    return "".join(
        f"{name} {hashlib.sha256(source(name).read_bytes()).hexdigest()}\n" for name in COMPILED
    )


def write_stamp() -> None:
    STAMP.write_text(_digests())


def remove_built() -> None:
    for path in built():
        path.unlink()
    STAMP.unlink(missing_ok=True)


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' .py files ahead of their extensions."""

    names = frozenset(f"{PACKAGE}.{name}" for name in COMPILED)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, source(fullname.rpartition(".")[2]))


def choose() -> None:
    """Decide, once per process and before the first import, which build runs."""
    global _state
    if any(isinstance(f, _Sources) for f in sys.meta_path):
        return
    have = {name for name in COMPILED if (HERE / f"{name}{_suffix()}").is_file()}
    if not have:
        _state = "pure"
        return
    if os.environ.get("TURNOUT_PURE") == "1":
        _state = "forced pure"
    elif have != set(COMPILED) or not STAMP.is_file() or STAMP.read_text() != _digests():
        _state = "stale"
        print(
            "turnout: the compiled hot path (proxy/http/*.so) was built from other "
            "sources than proxy/http/*.py; running the sources. `make` rebuilds it.",
            file=sys.stderr,
        )
    else:
        _state = "compiled"
        return
    sys.meta_path.insert(0, _Sources())


def describe() -> str:
    """One line for `turnout version`: what runs, and why."""
    server = importlib.import_module(f"{PACKAGE}.server")
    if _state == "compiled" and str(server.__file__).endswith(_suffix()):
        return f"hot path: compiled with mypyc ({', '.join(COMPILED)})"
    reasons = {
        "pure": "not compiled (`make` compiles it)",
        "stale": "compiled from older sources, running the sources (`make` rebuilds)",
        "forced pure": "TURNOUT_PURE=1",
        "compiled": "compiled, but the sources were loaded first",
    }
    return f"hot path: Python sources ({reasons[_state]})"
