"""The check report: what ``turnout check`` prints and what ``POST /api/check`` will answer.

A report is made by the very code the live proxy runs: the configuration
layer decodes, ``build_merged`` compiles, nothing listens and nothing is
dialled. ``check_configs`` is the entry point for anything that holds
configurations already (the API: a candidate body next to the live providers);
``turnout check`` reads files and, with ``--live``, fetches remote providers
once, then calls it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.config.dynamic import DynamicConfig
from proxy.config.lines import attach_lines
from proxy.config.load import ConfigError, ConfigIssue
from proxy.config.static import StaticConfig
from proxy.runtime.snapshot import ProviderConfig, Snapshot, build_merged

_LINE = re.compile(r"^line (\d+)$")


@dataclass(slots=True)
class CheckReport:
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)
    routers: int = 0
    services: int = 0
    middlewares: int = 0
    tcp_routers: int = 0
    tcp_services: int = 0
    tcp_middlewares: int = 0
    udp_routers: int = 0
    udp_services: int = 0
    sources: list[tuple[str, str]] = field(default_factory=list)  # (provider, source)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = (
            f"{_count(self.routers, 'router')}, {_count(self.services, 'service')}, "
            f"{_count(self.middlewares, 'middleware')}"
        )
        if self.tcp_routers or self.tcp_services or self.tcp_middlewares:
            text += (
                f"; TCP: {_count(self.tcp_routers, 'router')}, "
                f"{_count(self.tcp_services, 'service')}, "
                f"{_count(self.tcp_middlewares, 'middleware')}"
            )
        if self.udp_routers or self.udp_services:
            text += (
                f"; UDP: {_count(self.udp_routers, 'router')}, "
                f"{_count(self.udp_services, 'service')}"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "routers": self.routers,
            "services": self.services,
            "middlewares": self.middlewares,
            "tcp": {
                "routers": self.tcp_routers,
                "services": self.tcp_services,
                "middlewares": self.tcp_middlewares,
            },
            "udp": {"routers": self.udp_routers, "services": self.udp_services},
            "errors": [_issue_dict(issue) for issue in self.errors],
            "warnings": [_issue_dict(issue) for issue in self.warnings],
            "sources": [{"provider": p, "source": s} for p, s in self.sources],
        }


def _issue_dict(issue: ConfigIssue) -> dict[str, Any]:
    line = issue.line
    match = _LINE.match(issue.path)
    if line is None and match:
        line = int(match.group(1))  # a syntax error
    return {"file": issue.file, "path": issue.path, "line": line, "message": issue.message}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def check_configs(
    static: StaticConfig,
    entrypoints: list[str],
    sources: Sequence[tuple[str, str, DynamicConfig | ConfigError | None]],
    *,
    warnings: Sequence[ConfigIssue] = (),
) -> CheckReport:
    """Check ``(provider, source, configuration or its decoding error)`` triples together.

    A ``None`` configuration is a provider that was not read (listed, not checked).
    """
    report = CheckReport(warnings=list(warnings))
    configs: list[ProviderConfig] = []
    for provider, source, update in sources:
        report.sources.append((provider, source))
        if update is None:
            continue
        if isinstance(update, ConfigError):
            report.errors.extend(update.issues)
        else:
            configs.append(ProviderConfig(provider, update, source))
    snapshot, issues = build_merged(configs, static, entrypoints=entrypoints, pools=None)
    report.errors.extend(issues)
    fill_counts(report, snapshot)
    return report


def attach_report_lines(report: CheckReport) -> None:
    """Add the line of each issue whose key is found in the file it names.

    Only for sources read from the files they name (``turnout check``): a
    candidate configuration sent to the API is not the file on disk.
    """
    report.errors = attach_lines(report.errors)
    report.warnings = attach_lines(report.warnings)


def fill_counts(report: CheckReport, snapshot: Snapshot) -> None:
    report.warnings.extend(snapshot.warnings)
    report.routers = sum(1 for name in snapshot.router_configs if not name.endswith("@internal"))
    report.services = sum(1 for name in snapshot.service_configs if not name.endswith("@internal"))
    report.middlewares = len(snapshot.middlewares)
    report.tcp_routers = len(snapshot.tcp.router_configs)
    report.tcp_services = len(snapshot.tcp.service_configs)
    report.tcp_middlewares = len(snapshot.tcp.middleware_configs)
    report.udp_routers = len(snapshot.udp.router_configs)
    report.udp_services = len(snapshot.udp.service_configs)


def report_of(snapshot: Snapshot, issues: Sequence[ConfigIssue]) -> CheckReport:
    """The report of a build already made (``Aggregator.check`` for the API)."""
    report = CheckReport(errors=list(issues))
    report.sources = [(config.provider, config.source) for config in snapshot.providers]
    fill_counts(report, snapshot)
    return report
