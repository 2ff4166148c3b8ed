"""Pieces shared by the static and the dynamic configuration trees.

Every configuration Struct derives from :class:`ConfigStruct`: frozen,
keyword-only, camelCase keys. Where Traefik's key is not the plain camelCase of
the Python name (acronyms such as ``rootCAs``, ``trustedIPs``), the field says
so with ``msgspec.field(name=...)``.

Field conventions, following Traefik's Go structs:

- a Go pointer (presence means "enabled" or "set") is ``X | None = None``;
- a Go value with a default from ``SetDefaults`` carries that default here,
  so a section that is present gets Traefik's defaults for the keys it omits.
"""

from typing import Any

import msgspec

__all__ = [
    "UNSUPPORTED",
    "Certificate",
    "ClientTLS",
    "ConfigStruct",
    "Domain",
    "Spiffe",
    "list_default",
    "rule_problem",
]

# The end of every message about a feature Turnout has not built yet.
UNSUPPORTED = "is not supported by Turnout yet"


def rule_problem(rule: str, rule_syntax: str | None) -> tuple[str, str] | None:
    """(key, message) when a router's rule cannot be compiled at all, HTTP or TCP alike."""
    if not rule:
        return "rule", "a router needs a rule"
    if rule_syntax and rule_syntax != "v3":
        return (
            "ruleSyntax",
            f"rule syntax {rule_syntax!r} {UNSUPPORTED}; write the rule in v3 syntax",
        )
    return None


def list_default(*items: Any) -> Any:
    """A field defaulting to a fresh list of ``items`` (msgspec refuses shared
    non-empty mutable defaults)."""
    return msgspec.field(default_factory=lambda: list(items))


class ConfigStruct(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """Base of every configuration Struct (options are inherited by subclasses)."""


def set_fields(config: ConfigStruct) -> list[tuple[str, str]]:
    """(attribute, key as written) of every field of ``config`` that is set (not None):
    what a one-of-many struct (a middleware's type) holds."""
    return [
        (attr, encoded)
        for attr, encoded in zip(
            config.__struct_fields__, config.__struct_encode_fields__, strict=True
        )
        if getattr(config, attr) is not None
    ]


class Domain(ConfigStruct):
    """A certificate domain: main name and subject alternative names."""

    main: str = ""
    sans: list[str] = []


class ClientTLS(ConfigStruct):
    """TLS client settings used to reach providers, auth servers, exporters."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    insecure_skip_verify: bool = False


class Spiffe(ConfigStruct):
    """Allowed SPIFFE identities of a backend."""

    ids: list[str] = []
    trust_domain: str = ""


class Certificate(ConfigStruct):
    """A certificate and its key, each a file path or inline PEM content."""

    cert_file: str = ""
    key_file: str = ""
