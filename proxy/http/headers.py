"""Header names and precomputed bytes used on the forwarding path.

Names are compared lower-cased; the sets here are built once at import so the
per-header check on the hot path is a single set lookup.
"""

from __future__ import annotations

from http import HTTPStatus

# RFC 9110 7.6.1 and Go's httputil.ReverseProxy list: removed in both directions.
# Transfer-Encoding and Content-Length are not "removed": Turnout re-frames the
# message itself and writes exactly one framing header.
HOP_BY_HOP: frozenset[bytes] = frozenset(
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
FORWARDED: frozenset[bytes] = frozenset(
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


STATUS_LINES: dict[int, bytes] = {code: _status_line(code) for code in range(100, 600)}

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def chunk_size_line(size: int) -> bytes:
    return b"%x\r\n" % size


def is_token(name: bytes) -> bool:
    """RFC 9110 token: the only bytes allowed in a header name."""
    return bool(name) and not name.translate(None, _TCHAR)


_TCHAR = bytes(
    sorted(set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
)


def has_ctl(value: bytes) -> bool:
    """True if a header value carries a byte that could split a message (CR, LF, NUL...)."""
    return bool(value.translate(None, _VALUE_OK))


# Field values: visible ASCII, space, tab and obs-text (0x80-0xff).
_VALUE_OK = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
