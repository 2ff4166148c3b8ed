"""What of a static configuration Turnout reads but does not act on yet.

Traefik files carry sections for features Turnout has not built (other
providers, metrics, TLS...). They decode, so the file loads as it is,
but ignoring them silently would hide that, say, no Redis routes will ever
appear: ``turnout run`` and ``turnout check`` print one warning per section.
"""

from __future__ import annotations

import msgspec

from proxy.config.load import ConfigIssue
from proxy.config.static import StaticConfig

NOT_YET = "not supported by Turnout yet; ignored"

# Providers Turnout runs (see proxy/providers/); any other one is warned about.
PROVIDERS = ("file", "redis", "etcd", "http", "consulCatalog")


def _set_fields(struct: msgspec.Struct) -> list[str]:
    """Encoded names of the fields of struct that hold a value (not None)."""
    names = []
    for attr, encoded in zip(
        struct.__struct_fields__, struct.__struct_encode_fields__, strict=True
    ):
        value = getattr(struct, attr)
        if value is not None and value != {} and value != []:
            names.append(encoded)
    return names


def ignored_static_keys(static: StaticConfig) -> list[str]:
    keys: list[str] = []
    for name in (
        "tracing",
        "host_resolver",
        "spiffe",
        "ocsp",
    ):
        if getattr(static, name) is not None:
            keys.append(_encoded(StaticConfig, name))
    if static.experimental is not None:
        # Local plugins are Turnout's Python plugins (proxy/middlewares/plugin.py).
        experimental = static.experimental
        for attr, encoded in zip(
            experimental.__struct_fields__, experimental.__struct_encode_fields__, strict=True
        ):
            if getattr(experimental, attr) and attr not in (
                "local_plugins",
                "abort_on_plugin_failure",
            ):
                keys.append(f"experimental.{encoded}")
    if static.metrics is not None:
        # Prometheus and StatsD are built (proxy/observability/); not the others.
        for exporter in ("datadog", "influx_db2", "otlp"):
            if getattr(static.metrics, exporter) is not None:
                keys.append(f"metrics.{_encoded(type(static.metrics), exporter)}")
    if static.access_log is not None and static.access_log.otlp is not None:
        keys.append("accessLog.otlp")
    if static.log.otlp is not None:
        keys.append("log.otlp")
    api = static.api
    if api is not None:
        if api.base_path not in ("", "/"):
            keys.append("api.basePath")
        if api.middlewares:
            keys.append("api.middlewares")
    if static.certificates_resolvers:
        keys.append("certificatesResolvers")
    for provider in _set_fields(static.providers):
        if provider not in (*PROVIDERS, "providersThrottleDuration", "precedence"):
            keys.append(f"providers.{provider}")
    providers = static.providers
    if providers.redis is not None and providers.redis.sentinel is not None:
        keys.append("providers.redis.sentinel")
    consul = providers.consul_catalog
    if consul is not None:
        if consul.connect_aware:
            keys.append("providers.consulCatalog.connectAware")
        if consul.namespaces:
            keys.append("providers.consulCatalog.namespaces")
    for name, entrypoint in static.entry_points.items():
        prefix = f"entryPoints.{name}"
        if entrypoint.http3 is not None:
            keys.append(f"{prefix}.http3")
        http = entrypoint.http
        if http.tls is not None:
            keys.append(f"{prefix}.http.tls")
        if http.redirections is not None:
            keys.append(f"{prefix}.http.redirections")
        if http.middlewares:
            keys.append(f"{prefix}.http.middlewares")
    return keys


def _encoded(struct: type[msgspec.Struct], attr: str) -> str:
    index = struct.__struct_fields__.index(attr)
    return struct.__struct_encode_fields__[index]


def static_issues(static: StaticConfig, source: str) -> list[ConfigIssue]:
    return [ConfigIssue(source, key, NOT_YET) for key in ignored_static_keys(static)]


def static_warnings(static: StaticConfig, source: str) -> list[str]:
    return [str(issue) for issue in static_issues(static, source)]
