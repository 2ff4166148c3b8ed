"""Checks of the static ``metrics``, ``accessLog`` and ``log`` sections, before anything starts.

A value Turnout cannot honour stops ``turnout run`` and fails ``turnout check``
with ``FILE: key.path: message`` (exit 1), as a bad dynamic configuration is refused.
"""

from __future__ import annotations

from proxy.config.load import ConfigIssue
from proxy.config.static import StaticConfig
from proxy.observability import statsd
from proxy.observability.accesslines import status_range

FORMATS = ("common", "json")
FIELD_MODES = ("keep", "drop", "redact")


def static_issues(static: StaticConfig, source: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []

    def issue(path: str, message: str) -> None:
        issues.append(ConfigIssue(source, path, message))

    metrics = static.metrics
    if metrics is not None and metrics.stats_d is not None:
        config = metrics.stats_d
        try:
            statsd.parse_address(config.address)
        except ValueError as error:
            issue("metrics.statsD.address", str(error))
        if float(config.push_interval) <= 0:
            issue("metrics.statsD.pushInterval", "must be positive")
    if metrics is not None and metrics.prometheus is not None:
        buckets = metrics.prometheus.buckets
        if not buckets:
            issue("metrics.prometheus.buckets", "needs at least one bucket")
        elif any(b <= 0 for b in buckets) or len(set(buckets)) != len(buckets):
            issue("metrics.prometheus.buckets", "buckets must be positive and distinct")
    access = static.access_log
    if access is not None:
        if access.format.lower() not in FORMATS:
            issue("accessLog.format", f"expected common or json, got {access.format!r}")
        if access.buffering_size < 0:
            issue("accessLog.bufferingSize", "must not be negative")
        filters = access.filters
        if filters is not None:
            for index, codes in enumerate(filters.status_codes):
                if status_range(codes) is None:
                    issue(
                        f"accessLog.filters.statusCodes[{index}]",
                        f"expected a status code or a range like 500-599, got {codes!r}",
                    )
        fields = access.fields
        if fields is not None:
            _modes(issue, "accessLog.fields", fields.default_mode, fields.names)
            if fields.headers is not None:
                _modes(
                    issue,
                    "accessLog.fields.headers",
                    fields.headers.default_mode,
                    fields.headers.names,
                )
    log = static.log
    if log.format.lower() not in FORMATS:
        issue("log.format", f"expected common or json, got {log.format!r}")
    return issues


def _modes(issue, path: str, default: str, names: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    if default.lower() not in FIELD_MODES:
        issue(f"{path}.defaultMode", f"expected keep, drop or redact, got {default!r}")
    for name, mode in names.items():
        if mode.lower() not in FIELD_MODES:
            issue(f"{path}.names.{name}", f"expected keep, drop or redact, got {mode!r}")
