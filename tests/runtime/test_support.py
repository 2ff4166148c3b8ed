"""Static sections Turnout does not act on are named in warnings; built ones are not."""

from __future__ import annotations

import msgspec

from proxy.config.static import StaticConfig
from proxy.runtime.support import ignored_static_keys


def keys(raw: dict) -> list[str]:
    return ignored_static_keys(msgspec.convert(raw, StaticConfig))


def test_api_and_ping_are_built() -> None:
    assert keys({"api": {"insecure": True, "dashboard": True, "debug": True}, "ping": {}}) == []


def test_api_base_path_and_middlewares_are_not_yet() -> None:
    assert keys({"api": {"basePath": "/admin", "middlewares": ["auth@file"]}}) == [
        "api.basePath",
        "api.middlewares",
    ]
    assert keys({"api": {"basePath": "/"}}) == []
