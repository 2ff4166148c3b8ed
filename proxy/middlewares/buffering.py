"""buffering: read the whole request body before the service (Traefik's buffering, partly).

Request side, as Traefik (oxy's buffer): a body over ``maxRequestBodyBytes``
(0: no limit) is refused with 413, up front when Content-Length says so, else
as soon as the bytes read pass it; a body within the limit is held until it is
complete, then the rest of the chain and the service run. Turnout holds
bodies in memory only: past ``memRequestBodyBytes`` Traefik spills to a file,
so without a maximum a larger body is streamed to the service instead.
A chunked body is watched every 10 ms while it arrives (the engine has no
body-size callback yet).

Response side: a response whose Content-Length is over
``maxResponseBodyBytes`` becomes a 500, as Traefik answers. Responses are
not buffered (they stream), so one without Content-Length is not checked.
``retryExpression`` is refused as not supported yet.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.config.dynamic import Buffering
from proxy.middlewares import register
from proxy.middlewares.base import (
    AFTER_BODY,
    PENDING,
    Answer,
    BodyFilter,
    BuildContext,
    BuildError,
    Handler,
    Pending,
    ResponseHead,
)
from proxy.middlewares.chain import answer, resume

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

POLL = 0.01  # seconds between two looks at a chunked body
PLAIN = [(b"Content-Type", b"text/plain; charset=utf-8")]
TOO_LARGE = Answer(413, PLAIN, b"Request Entity Too Large")
ERROR_LINES = [b"Content-Type: text/plain; charset=utf-8\r\n"]


class Replace(BodyFilter):
    """Drops the backend's body and sends a fixed one instead."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    def feed(self, data: bytes) -> bytes:
        return b""

    def finish(self) -> bytes:
        return self.body


def payload_size(ex: Exchange) -> int:
    """Body bytes held so far, without the chunk framing the engine keeps for upstream."""
    pending = ex.pending
    if not pending:
        return 0
    if ex.chunked:
        return sum(len(data) for data in pending[1::3])  # size line, data, CRLF
    return ex.pending_size


def payload(ex: Exchange) -> bytes:
    """The body bytes held so far, without the chunk framing."""
    pending = ex.pending
    if not pending:
        return b""
    return b"".join(pending[1::3] if ex.chunked else pending)


class BufferingHandler(Handler):
    __slots__ = ("max_request", "max_response", "mem_request")

    def __init__(self, name: str, max_request: int, mem_request: int, max_response: int) -> None:
        super().__init__(name)
        self.max_request = max_request
        self.mem_request = mem_request
        self.max_response = max_response

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        limit = self.max_request
        length = ex.content_length
        if length is not None:
            if limit and length > limit:
                return TOO_LARGE
            if not limit and length > self.mem_request:
                return None  # too large to hold in memory: streamed
            ex.pending_limit = max(ex.pending_limit, length + 1)
            return AFTER_BODY
        if not ex.chunked or ex.request_done:
            return None
        # Room for the chunk framing too: the poll, not a pause, sees the limit passed.
        ex.pending_limit = limit + limit // 4 + 65536 if limit else self.mem_request
        asyncio.get_running_loop().call_later(POLL, self._watch, ex)
        return PENDING

    def _watch(self, ex: Exchange) -> None:
        if ex.finished or ex.conn.transport is None or ex.response_state != 0:
            return
        if self.max_request and payload_size(ex) > self.max_request:
            answer(ex, TOO_LARGE)
        elif ex.request_done or (not self.max_request and ex.pending_size > self.mem_request):
            resume(ex)
        else:
            asyncio.get_running_loop().call_later(POLL, self._watch, ex)

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if not self.max_response:
            return
        length = head.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_response:
            head.status = 500
            head.lines = list(ERROR_LINES)
            head.body_filter = Replace(b"Internal Server Error")


@register("buffering")
def build(name: str, config: Buffering, context: BuildContext) -> Handler:
    for key, value in (
        ("maxRequestBodyBytes", config.max_request_body_bytes),
        ("memRequestBodyBytes", config.mem_request_body_bytes),
        ("maxResponseBodyBytes", config.max_response_body_bytes),
        ("memResponseBodyBytes", config.mem_response_body_bytes),
    ):
        if value < 0:
            raise BuildError("must not be negative", key)
    if config.retry_expression:
        raise BuildError("retryExpression is not supported yet", "retryExpression")
    return BufferingHandler(
        name,
        config.max_request_body_bytes,
        config.mem_request_body_bytes or 1048576,
        config.max_response_body_bytes,
    )
