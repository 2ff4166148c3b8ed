"""HTTP middlewares: the registry from Traefik's type names to builders.

Each middleware lives in its own module and registers its builder here under
the field name of ``proxy.config.dynamic.Middleware`` it implements
(``add_prefix`` for ``addPrefix``). A type with no builder is refused by the
snapshot as not supported yet, so a configuration never silently loses one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from proxy.middlewares.base import Builder

REGISTRY: dict[str, Builder] = {}


def register(type_name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        REGISTRY[type_name] = builder
        return builder

    return add


def load_all() -> dict[str, Builder]:
    """Import every middleware module once, so that each registers itself."""
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name not in ("base", "chain"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded.append(True)
    return REGISTRY


_loaded: list[bool] = []
