"""Peek at a connection's first bytes: TLS or not, and the ClientHello's SNI and ALPN.

Nothing is consumed: the caller keeps every byte it fed and forwards them
unchanged (TLS passthrough needs the ClientHello exactly as the client sent it).

Like Traefik, only the first TLS record is read: a ClientHello is one record in
practice (up to 16 KiB), and a record may claim at most 5 + 65535 bytes, which
bounds what is buffered. A ClientHello split over several records, or one that
does not parse, is still TLS, with no server name (routers with HostSNI(`*`)
can take it, others cannot), as Go's handshake on the peeked bytes gives Traefik.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_PEEK", "Hello", "peek_hello"]

_HANDSHAKE = 0x16
_SSL2 = 0x80  # an SSLv2-compatible ClientHello: TLS, refused later by a real handshake
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_RECORD_HEADER = 5

MAX_PEEK = _RECORD_HEADER + 0xFFFF


class Hello(NamedTuple):
    is_tls: bool
    sni: str = ""  # lower-cased, without a trailing dot
    alpn: tuple[str, ...] = ()


NOT_TLS = Hello(False)
TLS_UNKNOWN = Hello(True)


def peek_hello(data: bytes) -> Hello | None:
    """What the first bytes say, or None while more bytes are needed (never past MAX_PEEK)."""
    if not data:
        return None
    first = data[0]
    if first == _SSL2:
        return TLS_UNKNOWN
    if first != _HANDSHAKE:
        return NOT_TLS
    if len(data) < _RECORD_HEADER:
        return None
    length = int.from_bytes(data[3:5], "big")
    end = _RECORD_HEADER + length
    if len(data) < end:
        return None
    try:
        return _client_hello(memoryview(data)[_RECORD_HEADER:end])
    except (IndexError, ValueError):
        return TLS_UNKNOWN


def _client_hello(body: memoryview) -> Hello:
    if len(body) < 4 or body[0] != _CLIENT_HELLO:
        return TLS_UNKNOWN
    size = int.from_bytes(body[1:4], "big")
    hello = body[4 : 4 + size]
    # version (2) + random (32), then session id, cipher suites, compression methods
    pos = 34
    pos += 1 + hello[pos]
    pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")
    pos += 1 + hello[pos]
    if pos + 2 > len(hello):
        return TLS_UNKNOWN  # no extensions at all
    end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
    if end > len(hello):
        return TLS_UNKNOWN
    pos += 2
    sni = ""
    alpn: tuple[str, ...] = ()
    while pos + 4 <= end:
        kind = int.from_bytes(hello[pos : pos + 2], "big")
        length = int.from_bytes(hello[pos + 2 : pos + 4], "big")
        data = hello[pos + 4 : pos + 4 + length]
        if len(data) != length:
            return TLS_UNKNOWN
        if kind == _EXT_SERVER_NAME:
            sni = _server_name(data)
        elif kind == _EXT_ALPN:
            alpn = _protocols(data)
        pos += 4 + length
    return Hello(True, sni, alpn)


def _server_name(data: memoryview) -> str:
    pos, end = 2, 2 + int.from_bytes(data[0:2], "big")
    while pos + 3 <= end:
        kind = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        name = bytes(data[pos + 3 : pos + 3 + length])
        if kind == 0:  # host_name
            # Go's handshake keeps only ASCII names, lower-cased by Traefik, without a final dot.
            text = name.decode("ascii", "replace")
            return text.lower().rstrip(".")
        pos += 3 + length
    return ""


def _protocols(data: memoryview) -> tuple[str, ...]:
    pos, end = 2, 2 + int.from_bytes(data[0:2], "big")
    found: list[str] = []
    while pos < end:
        length = data[pos]
        found.append(bytes(data[pos + 1 : pos + 1 + length]).decode("latin-1"))
        pos += 1 + length
    return tuple(found)
