"""Header names and precomputed bytes used on the forwarding path.

Names are compared lower-cased; the sets here are built once at import so the
per-header check on the hot path is a single set lookup.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

# RFC 9110 7.6.1 and Go's httputil.ReverseProxy list: removed in both directions.
# Transfer-Encoding and Content-Length are not "removed": Turnout re-frames the
# message itself and writes exactly one framing header.
HOP_BY_HOP: Final[frozenset[bytes]] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# X-Forwarded-* headers Traefik strips from requests of untrusted clients
# (pkg/middlewares/forwardedheaders: xHeaders).
FORWARDED: Final[frozenset[bytes]] = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-server",
        b"x-forwarded-uri",
        b"x-forwarded-method",
        b"x-forwarded-prefix",
        b"x-forwarded-tls-client-cert",
        b"x-forwarded-tls-client-cert-info",
        b"x-real-ip",
    }
)


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINES: Final[dict[int, bytes]] = {code: _status_line(code) for code in range(100, 600)}

CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"


def chunk_size_line(size: int) -> bytes:
    return b"%x\r\n" % size


def is_token(name: bytes) -> bool:
    """RFC 9110 token: the only bytes allowed in a header name."""
    return bool(name) and not name.translate(None, _TCHAR)


_TCHAR: Final = bytes(
    sorted(set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
)


def has_ctl(value: bytes) -> bool:
    """True if a header value carries a byte that could split a message (CR, LF, NUL...)."""
    return _CTL_SEARCH(value) is not None


# Field values: visible ASCII, space, tab and obs-text (0x80-0xff); anything else
# is a control byte. A compiled pattern, as bytes.translate(None, delete) would
# rebuild its 256-entry table at every call (three times the cost, PERFORMANCE.md).
_CTL_SEARCH: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search

# Bytes looked for with ``in``: as ints, since ``int in bytes`` is one memchr,
# where ``bytes in bytes`` first fails to read its needle as an int, and CPython
# formats (then drops) a TypeError for it: about 1,500 instructions a test.
HASH: Final = 0x23  # "#"
SPACE: Final = 0x20  # " "
TAB: Final = 0x09  # "\t"
PERCENT: Final = 0x25  # "%"
