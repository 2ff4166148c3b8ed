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
    if settings.redis is not None:
        from proxy.providers.redis import RedisProvider

        providers.append(RedisProvider(settings.redis))
    if settings.etcd is not None:
        from proxy.providers.etcd import EtcdProvider

        providers.append(EtcdProvider(settings.etcd))
    if settings.http is not None:
        from proxy.providers.http import HTTPProvider

        providers.append(HTTPProvider(settings.http))
    if settings.consul_catalog is not None:
        from proxy.providers.consul_catalog import ConsulCatalogProvider

        providers.append(ConsulCatalogProvider(settings.consul_catalog))
    return providers
