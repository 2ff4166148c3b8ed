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
    """Answer ``exchange``; ``headers`` are extra complete header lines (``Name: value\r\n``)."""
    if status < 200 or status in (204, 304):
        # No body, and no framing for one (RFC 9110 6.4.1): a configured
        # terminatingStatusCode can be 204.
        respond(exchange, status, [status_line(status), headers], None)
        return
    head = [status_line(status), b"Content-Type: ", content_type, b"\r\n", headers]
    respond(exchange, status, head, body)


def send_prepared(exchange: Exchange, status: int, head: bytes, body: bytes) -> None:
    """Answer with a head prepared once (``head``: every header line but the framing)."""
    respond(exchange, status, [head], body)


def respond(exchange: Exchange, status: int, head: list[bytes], body: bytes | None) -> None:
    """Add the framing and connection headers to ``head`` and write it all at once.

    ``body`` None: a status that has no body (no Content-Length either).
    """
    conn = exchange.conn
    close = not exchange.keep_alive or conn.closing
    if body is not None:
        head.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        head.append(b"Connection: close\r\n")
    elif exchange.version == "1.0":
        head.append(b"Connection: keep-alive\r\n")
    head.append(b"\r\n")
    if body and not exchange.is_head:
        head.append(body)
        exchange.response_bytes = len(body)  # body bytes, as the metrics count them
    exchange.status = status
    conn.respond(exchange, b"".join(head), close)
