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

__all__ = ["Certificate", "ClientTLS", "ConfigStruct", "Domain", "Spiffe", "list_default"]


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
