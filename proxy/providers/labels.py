"""Traefik's label configuration: ``traefik.http.routers.R.rule=...`` -> a dynamic configuration.

Docker labels, Consul tags (``key=value``) and Nomad tags all use this form,
so it is parsed here once. Only keys under ``traefik.http``, ``traefik.tcp``,
``traefik.udp`` and ``traefik.tls`` are configuration (as Traefik's
``label.DecodeConfiguration``); ``traefik.enable`` is read apart, and other
``traefik.*`` keys belong to a provider (``traefik.docker.network``...).

The label form differs from files in three ways, all handled here:

- a service's single server is ``loadbalancer.server.*`` (not a list);
  its ``port`` and ``scheme`` (and a TCP/UDP server's ``port``) are not
  configuration keys but tell the provider how to build the server's address,
  so they are returned apart;
- a list of structs is indexed in the key: ``tls.domains[0].main``;
- lists of scalars are comma-separated text (the configuration layer splits them).

Keys match case-insensitively, as everywhere in Traefik.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError, ConfigIssue, decode_dynamic

SECTIONS = ("http", "tcp", "udp", "tls")
# Server fields that only say how to build the address from the container or instance.
ADDRESS_FIELDS = {"http": ("port", "scheme"), "tcp": ("port",), "udp": ("port",)}
_INDEXED = re.compile(r"^(.+)\[(\d+)\]$")


@dataclass(slots=True)
class LabelConfiguration:
    dynamic: DynamicConfig
    enable: bool | None = None  # traefik.enable, if given
    # (section, service name) -> the value of its ``loadbalancer.server.port`` / ``.scheme``
    server_ports: dict[tuple[str, str], str] = field(default_factory=dict)
    server_schemes: dict[tuple[str, str], str] = field(default_factory=dict)


def neutral_labels(tags: list[str], prefix: str = "traefik") -> dict[str, str]:
    """Consul/Nomad tags ``<prefix>.key=value`` -> labels ``traefik.key`` (Traefik's rule)."""
    labels: dict[str, str] = {}
    start = prefix + "."
    for tag in tags:
        key, sep, value = tag.partition("=")
        if sep and key.startswith(start):
            labels["traefik." + key[len(start) :]] = value
    return labels


def parse_labels(labels: Mapping[str, str], source: str) -> LabelConfiguration:
    """Decode ``traefik.*`` labels; raises ConfigError naming each bad label."""
    tree: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    result = LabelConfiguration(DynamicConfig())
    for key in sorted(labels):
        value = labels[key]
        lower = key.lower()
        if not lower.startswith("traefik."):
            continue
        rest = key[len("traefik.") :]
        if rest.lower() == "enable":
            parsed = _bool(value)
            if parsed is None:
                issues.append(ConfigIssue(source, key, f"expected true or false, got {value!r}"))
            result.enable = parsed
            continue
        segments = _segments(rest)
        if not segments or segments[0].lower() not in SECTIONS:
            continue  # traefik.docker.*, traefik.consulcatalog.*: the provider's own
        segments[0] = segments[0].lower()
        server = _server_segments(segments, value, result)
        if server is None:
            # The address labels still declare the service (``services.S.loadbalancer``).
            node = tree
            for part in segments[:4]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            continue
        segments = server
        _insert(tree, segments, value, key, source, issues)
    if issues:
        raise ConfigError(issues)
    result.dynamic = decode_dynamic(tree, source)
    return result


def _segments(rest: str) -> list[str]:
    segments: list[str] = []
    for part in rest.split("."):
        match = _INDEXED.match(part)
        if match:
            segments += [match.group(1), match.group(2)]
        else:
            segments.append(part)
    return segments


def _server_segments(
    segments: list[str], value: str, result: LabelConfiguration
) -> list[str] | None:
    """``services.S.loadbalancer.server.F`` -> ``servers.0.F``, or None for port/scheme."""
    section = segments[0]
    if (
        section in ADDRESS_FIELDS
        and len(segments) == 6
        and segments[1].lower() == "services"
        and segments[3].lower() == "loadbalancer"
        and segments[4].lower() == "server"
    ):
        service, field_name = segments[2], segments[5].lower()
        if field_name == "port" and "port" in ADDRESS_FIELDS[section]:
            result.server_ports[(section, service)] = value
            return None
        if field_name == "scheme" and "scheme" in ADDRESS_FIELDS[section]:
            result.server_schemes[(section, service)] = value
            return None
        return [*segments[:4], "servers", "0", segments[5]]
    return segments


def _insert(
    tree: dict[str, Any],
    segments: list[str],
    value: str,
    key: str,
    source: str,
    issues: list[ConfigIssue],
) -> None:
    node = tree
    for part in segments[:-1]:
        child = node.setdefault(part, {})
        if isinstance(child, str) and _bool(child) is True:
            # ``tls=true`` next to ``tls.domains[0].main=...``: the table is there.
            child = node[part] = {}
        if not isinstance(child, dict):
            issues.append(ConfigIssue(source, key, "a label above this one already holds a value"))
            return
        node = child
    leaf = segments[-1]
    if isinstance(node.get(leaf), dict):
        if _bool(value) is True:
            return
        issues.append(ConfigIssue(source, key, "other labels go below this one"))
        return
    node[leaf] = value


def _bool(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("true", "1", "t"):
        return True
    if text in ("false", "0", "f"):
        return False
    return None


def normalize(name: str) -> str:
    """Traefik's ``provider.Normalize``: runs of non-letters/digits become single dashes."""
    return "-".join(part for part in re.split(r"[^\w]|_", name) if part)
