"""What a rule reads from a request: the `RequestView` protocol, and a plain implementation.

The HTTP engine passes its own object; `SimpleRequest` serves tests, `turnout explain`
and anything else that builds a request from parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = ["RequestView", "SimpleRequest"]


class RequestView(Protocol):
    """Rule values are Go strings, i.e. UTF-8 bytes. For a non-ASCII byte in the path,
    query or a header value to compare as Traefik compares it, decode those bytes as
    UTF-8 with surrogateescape (regexps then see the original bytes)."""

    method: str  # as received, e.g. "GET"
    host: str  # lower-cased, port stripped, IPv6 without brackets
    path: str  # request path (percent-decoded, as Go's URL.Path), no query
    raw_query: str  # the part after '?', '' if none
    client_ip: str  # connection peer address

    def header(self, name: str) -> list[str]:
        """All values of header `name` (given lower-case) in order; [] if absent."""
        ...


_NO_VALUES: list[str] = []


class SimpleRequest:
    __slots__ = ("_headers", "client_ip", "host", "method", "path", "raw_query")

    def __init__(
        self,
        method: str = "GET",
        host: str = "",
        path: str = "/",
        raw_query: str = "",
        client_ip: str = "127.0.0.1",
        headers: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] = (),
    ) -> None:
        self.method = method
        self.host = host
        self.path = path
        self.raw_query = raw_query
        self.client_ip = client_ip
        pairs: Iterable[tuple[str, str | Sequence[str]]] = (
            headers.items() if isinstance(headers, Mapping) else headers
        )
        collected: dict[str, list[str]] = {}
        for name, value in pairs:
            values = collected.setdefault(name.lower(), [])
            if isinstance(value, str):
                values.append(value)
            else:
                values.extend(value)
        self._headers = collected

    def header(self, name: str) -> list[str]:
        return self._headers.get(name, _NO_VALUES)

    def __repr__(self) -> str:
        query = f"?{self.raw_query}" if self.raw_query else ""
        return (
            f"SimpleRequest({self.method} {self.host}{self.path}{query}"
            f" from {self.client_ip}, headers={self._headers})"
        )
