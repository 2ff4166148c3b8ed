"""Which build of the hot path runs: the mypyc-compiled modules, or their Python sources.

`make` compiles the modules in COMPILED (scripts/compile_native.py) into C
extensions beside their sources, and records the sources' digests in a stamp.
Python imports an extension before a source of the same name, so an extension
built from older sources would run silently in place of an edited file; this
module, imported by the ``proxy`` package before any of them, loads the sources
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

# What every proxied request runs through: the HTTP engine, routing, the
# balancer, the middleware chain's driver, accepting, counting and the access
# log's record (PERFORMANCE.md, "Compiled with mypyc").
COMPILED = (
    "proxy.http.server",
    "proxy.http.exchange",
    "proxy.http.upstream",
    "proxy.http.headers",
    "proxy.rules.matcher",
    "proxy.services.loadbalancer",
    "proxy.middlewares.chain",
    "proxy.runtime.entrypoint",
    "proxy.observability.metrics",
    "proxy.observability.accessrecord",
)
ROOT = Path(__file__).resolve().parent.parent  # the directory that holds `proxy`
STAMP = Path(__file__).resolve().parent / ".native-sources"

_state = "pure"  # "compiled", "pure", "stale" or "forced pure"


def source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def extension(module: str) -> Path:
    path = source(module)
    return path.with_name(path.stem + _suffix())


def built() -> list[Path]:
    """Every extension in the package: the compiled modules, their mypyc runtime
    libraries, and any left from a build that compiled other modules."""
    return sorted((ROOT / "proxy").rglob("*" + _suffix()))


def _runtime(module: str) -> Path:
    path = source(module)
    return path.with_name(path.stem + "__mypyc" + _suffix())


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _digests() -> str:
    return "".join(
        f"{module} {hashlib.sha256(source(module).read_bytes()).hexdigest()}\n"
        for module in COMPILED
    )


def write_stamp() -> None:
    STAMP.write_text(_digests())


def remove_built() -> None:
    for path in built():
        path.unlink()
    STAMP.unlink(missing_ok=True)


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the package's .py files ahead of any extension built beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("proxy."):
            return None
        module = source(fullname)
        if not module.is_file() or not extension(fullname).is_file():
            return None  # a package, or a module with no extension: the usual finders
        return importlib.util.spec_from_file_location(fullname, module)


def choose() -> None:
    """Decide, once per process and before the first import, which build runs."""
    global _state
    if any(isinstance(f, _Sources) for f in sys.meta_path):
        return
    present = built()
    if not present:
        _state = "pure"
        return
    modules = {extension(module) for module in COMPILED}
    runtimes = {_runtime(module) for module in COMPILED}  # mypyc's, beside each module
    if os.environ.get("TURNOUT_PURE") == "1":
        _state = "forced pure"
    elif (
        not modules <= set(present) <= modules | runtimes
        or not STAMP.is_file()
        or STAMP.read_text() != _digests()
    ):
        _state = "stale"
        print(
            "turnout: the compiled hot path was built from other sources than the "
            "ones beside it; running the sources. `make` rebuilds it.",
            file=sys.stderr,
        )
    else:
        _state = "compiled"
        return
    sys.meta_path.insert(0, _Sources())


def describe() -> str:
    """One line for `turnout version`: what runs, and why."""
    server = importlib.import_module(COMPILED[0])
    if _state == "compiled" and str(server.__file__).endswith(_suffix()):
        return f"hot path: compiled with mypyc ({len(COMPILED)} modules)"
    reasons = {
        "pure": "not compiled (`make` compiles it)",
        "stale": "compiled from older sources, running the sources (`make` rebuilds)",
        "forced pure": "TURNOUT_PURE=1",
        "compiled": "compiled, but the sources were loaded first",
    }
    return f"hot path: Python sources ({reasons[_state]})"
