"""Complete responses of the internal services, written in one piece.

An internal service answers from memory: the head and the body go out in one
``transport.write`` (see PERF-NOTES: one write per small response).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"

_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d Status\r\n" % status


def send(
    exchange: Exchange,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: bytes = b"",
) -> None:
    """Answer ``exchange``; ``headers`` are extra complete header lines (``Name: value\\r\\n``)."""
    conn = exchange.conn
    close = not exchange.keep_alive or conn.closing
    if status < 200 or status in (204, 304):
        # No body, and no framing for one (RFC 9110 6.4.1): a configured
        # terminatingStatusCode can be 204.
        body = b""
        head = [status_line(status), headers]
    else:
        head = [
            status_line(status),
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: %d\r\n" % len(body),
            headers,
        ]
    if close:
        head.append(b"Connection: close\r\n")
    elif exchange.version == "1.0":
        head.append(b"Connection: keep-alive\r\n")
    head.append(b"\r\n")
    if not exchange.is_head:
        head.append(body)
    exchange.status = status
    conn.respond(exchange, b"".join(head), close)


def send_prepared(exchange: Exchange, status: int, head: bytes, body: bytes) -> None:
    """Answer with a head prepared once (``head``: every header line but the framing)."""
    conn = exchange.conn
    close = not exchange.keep_alive or conn.closing
    parts = [head, b"Content-Length: %d\r\n" % len(body)]
    if close:
        parts.append(b"Connection: close\r\n")
    elif exchange.version == "1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not exchange.is_head:
        parts.append(body)
    exchange.status = status
    conn.respond(exchange, b"".join(parts), close)
