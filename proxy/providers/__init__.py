"""Configuration providers: each one yields complete dynamic configurations for its namespace.

``configured(static, base)`` builds the providers a static configuration
enables, in a fixed order (file first: its errors stop start-up).
"""

from __future__ import annotations

from pathlib import Path

from proxy.config.static import StaticConfig
from proxy.providers.base import Provider, ProviderUnavailable, Sink

__all__ = ["Provider", "ProviderUnavailable", "Sink", "configured"]


def configured(static: StaticConfig, base: Path | None = None) -> list[Provider]:
    providers: list[Provider] = []
    settings = static.providers
    file = settings.file
    if file is not None and (file.filename or file.directory):
        from proxy.providers.file import FileProvider

        providers.append(FileProvider(file, base))
    return providers
