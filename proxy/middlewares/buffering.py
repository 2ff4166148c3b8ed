"""buffering: whole request and response bodies, held before they go on (Traefik's buffering).

Request side, as Traefik (oxy's buffer): a body over ``maxRequestBodyBytes``
(0: no limit) is refused with 413, up front when Content-Length says so, else
as soon as the bytes read pass it; a body within the limit is held until it is
complete, then the rest of the chain and the service run. Up to
``memRequestBodyBytes`` it is held in memory, past it in a temporary file
(``proxy.http.spool``), sent to the backend at the pace it reads and deleted
when the exchange ends. A chunked body is watched every 10 ms while it
arrives (the engine has no body-size callback yet); once whole it goes to the
backend with a Content-Length instead of its chunked framing, as Traefik sends
it.

Response side, as oxy's buffer: every response of the backend is held whole
before the client gets a byte of it, up to ``memResponseBodyBytes`` (default
1 MiB) in memory, past it in an anonymous temporary file (``ResponseSpool``,
deleted with the exchange), then sent with a Content-Length (a chunked or
close-delimited body loses that framing), from the file at the client's pace.
A response over ``maxResponseBodyBytes`` (0: no limit) becomes a 500, passed
through the middlewares outside this one: on its first bytes when its
Content-Length says so, else as soon as the held bytes pass it (the backend
connection is closed then, the rest is not read). A filter of a
middleware outside this one (compress) still streams what it rewrites; one
inside it rewrites the body as it is held, so the client gets the rewritten
body with its Content-Length and the maximum bounds what the filter wrote, as
Traefik's buffer holds what the middlewares inside it write.
A backend that dies in the middle of a held body: nothing was sent, so the
client gets a whole 500 (``Exchange._unsent_aborted``), as Traefik's recovery
handler answers the panic of its proxy's failed copy.

``retryExpression`` (oxy's predicate, see ``proxy.middlewares.retry_expression``)
is evaluated on every answer of the backend (``ResponseCode()`` its status)
and on every try the service could not answer (``IsNetworkError()``: a 502 or
504 the proxy produced); while it holds, at most 10 tries as oxy, the answer
of that try is read and dropped and the request is sent again with its held
body.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.config.dynamic import Buffering
from proxy.http.spool import BodySpool, ResponseSpool
from proxy.middlewares import register
from proxy.middlewares.base import (
    AFTER_BODY,
    PENDING,
    Answer,
    BuildContext,
    BuildError,
    Handler,
    Pending,
    ResponseHead,
)
from proxy.middlewares.chain import answer, answer_from, redispatch, resume
from proxy.middlewares.retry_expression import Attempt, ExpressionError, Predicate, parse

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

POLL = 0.01  # seconds between two looks at a chunked body
MAX_TRIES = 10  # oxy's buffer: DefaultMaxRetryAttempts
PLAIN = [(b"Content-Type", b"text/plain; charset=utf-8")]
TOO_LARGE = Answer(413, PLAIN, b"Request Entity Too Large")
SERVER_ERROR = Answer(500, PLAIN, b"Internal Server Error")
ERROR_LINES = [b"Content-Type: text/plain; charset=utf-8\r\n"]


def payload_size(ex: Exchange) -> int:
    """Body bytes held so far, without any chunk framing the engine keeps for upstream."""
    if ex.spool is not None:
        return ex.spool.payload
    pending = ex.pending
    if not pending:
        return 0
    if ex.chunked:
        return sum(len(data) for data in pending[1::3])  # size line, data, CRLF
    return ex.pending_size


def payload(ex: Exchange) -> bytes:
    """The body bytes held so far, without the chunk framing."""
    if ex.spool is not None:
        return ex.spool.read_payload()  # held by a buffering before this middleware
    pending = ex.pending
    if not pending:
        return b""
    return b"".join(pending[1::3] if ex.chunked else pending)


def inner(ex: Exchange, head: ResponseHead, hold: ResponseSpool) -> None:
    """What the middlewares inside this one did to the response applies before it is held.

    Responders run innermost first: a filter or sniff on ``head`` now is an
    inner middleware's (compress inside buffering). In Traefik it writes
    into the buffer, so what is held, bounded and sent with a Content-Length
    is its output; the middlewares outside see the head once it is whole.
    """
    hold.filter, head.body_filter = head.body_filter, None
    sniff = head.sniff
    if sniff is None:
        return
    head.sniff, hold.sniff_size = None, head.sniff_size
    head.sniff_size, head.sniff_hold = 1, False

    def decide(first: bytes) -> None:
        # compress names its filter on the exchange: taken for the hold, and an
        # outer middleware's filter (set on the exchange already) left in place.
        outer, ex.body_filter = ex.body_filter, None
        sniff(head, first)
        if ex.body_filter is not None:
            hold.filter = ex.body_filter
        ex.body_filter = outer

    hold.sniff = decide


class BufferingHandler(Handler):
    __slots__ = ("holds", "max_request", "max_response", "mem_request", "mem_response")

    def __init__(self, name: str, limits: tuple[int, int, int, int]) -> None:
        super().__init__(name)
        self.max_request, self.mem_request, self.max_response, self.mem_response = limits
        self.holds: dict[Exchange, ResponseSpool] = {}  # responses held, closed on done

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        limit = self.max_request
        length = ex.content_length
        if length is not None:
            if limit and length > limit:
                return TOO_LARGE
            if length > self.mem_request:
                self._spool(ex)  # past memRequestBodyBytes: to a temporary file
            else:
                ex.pending_limit = max(ex.pending_limit, length + 1)
            return AFTER_BODY
        if not ex.chunked:
            return None
        if ex.request_done:
            # Arrived whole with its head: sent with a Content-Length, as Traefik.
            payload = (ex.pending or [])[1::3]  # (size line, data, CRLF) triples
            ex.pending = payload
            ex.pending_size = ex.content_length = sum(len(data) for data in payload)
            ex.chunked = False
            return None
        self._spool(ex)
        asyncio.get_running_loop().call_later(POLL, self._watch, ex)
        return PENDING

    def _spool(self, ex: Exchange) -> None:
        """From now on the body goes to a spool (what arrived already first)."""
        ex.spool = BodySpool(self.mem_request, chunked=ex.chunked, held=ex.pending)
        ex.pending = None
        ex.pending_size = 0
        ex.conn.resume_reading_for(ex.conn.PAUSE_PENDING)

    def _watch(self, ex: Exchange) -> None:
        if ex.finished or ex.conn.transport is None or ex.response_state != 0:
            return
        spool = ex.spool
        if self.max_request and spool is not None and spool.payload > self.max_request:
            answer(ex, TOO_LARGE)
        elif ex.request_done:
            if spool is not None:
                # Held whole, without its framing: sent with a Content-Length.
                ex.chunked = False
                ex.content_length = spool.payload
            resume(ex)
        else:
            asyncio.get_running_loop().call_later(POLL, self._watch, ex)

    def _too_large(self, ex: Exchange) -> None:
        # Through the middlewares outside this one, as Traefik's error handler writes.
        answer_from(ex, self, SERVER_ERROR)

    def on_done(self, ex: Exchange, status: int) -> None:
        if ex.spool is not None:
            ex.spool.close()  # the temporary file goes now
        hold = self.holds.pop(ex, None)
        if hold is not None:
            hold.close()

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if ex.upstream is None or head.hold is not None:
            return  # a middleware's or the engine's answer (whole already), or held inside
        # An inner filter (compress) rewrites the body: the backend's length is not what is held.
        length = head.get("Content-Length") if head.body_filter is None else None
        too_large = (
            self.max_response and length and length.isdigit() and int(length) > self.max_response
        )
        if ex.is_head or head.status in (204, 304):
            if too_large:
                head.status = 500
                head.lines = list(ERROR_LINES)
            return  # no body to hold
        # Known too large: refused at its first bytes, its connection closed.
        limit = -1 if too_large else self.max_response
        hold = ResponseSpool(self.mem_response, limit, self._too_large)
        if head.body_filter is not None or head.sniff is not None:
            inner(ex, head, hold)
        head.hold = hold
        self.holds[ex] = hold


class RetryingBufferingHandler(BufferingHandler):
    """With ``retryExpression``: the held body is kept, and sent again while it holds."""

    __slots__ = ("retry", "tries")

    def __init__(self, name: str, limits: tuple[int, int, int, int], retry: Predicate) -> None:
        super().__init__(name, limits)
        self.retry = retry
        self.tries: dict[Exchange, int] = {}

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        verdict = super().on_request(ex)
        if verdict is not TOO_LARGE and ex.spool is None:
            ex.keep_body(self.max_request or self.mem_request)  # a spool is sent again as it is
        return verdict

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        tries = self.tries.get(ex, 1)
        status = getattr(error, "status", 502)
        if tries >= MAX_TRIES or not self.retry(Attempt(ex.method, tries, status)):
            return False
        if ex.spool is None and not ex.rewind_body():
            return False  # the body was too large to keep
        self.tries[ex] = tries + 1
        asyncio.get_running_loop().call_soon(redispatch, ex)
        return True

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if ex.upstream is not None and head.hold is None:
            # oxy evaluates the expression on every response of the backend.
            tries = self.tries.get(ex, 1)
            if (
                tries < MAX_TRIES
                and self.retry(Attempt(ex.method, tries, head.status))
                and (ex.spool is not None or ex.rewind_body())
            ):
                self.tries[ex] = tries + 1
                head.replace(self._again)  # this response is read and dropped first
                return
        super().on_response(ex, head)

    @staticmethod
    def _again(ex: Exchange) -> None:
        asyncio.get_running_loop().call_soon(redispatch, ex)

    def on_done(self, ex: Exchange, status: int) -> None:
        self.tries.pop(ex, None)
        super().on_done(ex, status)


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
    limits = (
        config.max_request_body_bytes,
        config.mem_request_body_bytes or 1048576,
        config.max_response_body_bytes,
        config.mem_response_body_bytes or 1048576,  # oxy's DefaultMemBodyBytes
    )
    if config.retry_expression:
        try:
            retry = parse(config.retry_expression)
        except ExpressionError as error:
            raise BuildError(f"invalid expression: {error}", "retryExpression") from None
        return RetryingBufferingHandler(name, limits, retry)
    return BufferingHandler(name, limits)
