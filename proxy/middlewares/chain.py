"""A router's middlewares compiled into one chain, and the engine's side of running it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http.errors import HttpError, reason
from proxy.middlewares.base import AFTER_BODY, BODY_FIRST, PENDING, Answer, Handler, ResponseHead

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.runtime.snapshot import RouteTarget


class CompiledChain:
    """The handlers of one router, in order, with the hooks each phase needs precomputed."""

    __slots__ = (
        "finishers",
        "handlers",
        "has_responders",
        "positions",
        "requesters",
        "response_hooks",
        "retriers",
        "size",
    )

    def __init__(self, handlers: tuple[Handler, ...]) -> None:
        self.handlers = handlers
        self.size = len(handlers)
        # For each start position, the bound on_request of the handlers from
        # there that have one: the runner loops over no others. ``positions``
        # finds a hook's handler when it does not return None; by id, as each
        # bound method is a distinct object even where a handler comes twice.
        hooks = [(index, h.on_request) for index, h in enumerate(handlers) if h.has_request]
        self.requesters = tuple(
            tuple(hook for index, hook in hooks if index >= start)
            for start in range(len(handlers) + 1)
        )
        self.positions = {id(hook): index for index, hook in hooks}
        self.has_responders = any(h.has_response for h in handlers)
        # Every response of the service meets these, innermost first: computed once.
        self.response_hooks = tuple(h.on_response for h in reversed(handlers) if h.has_response)
        self.finishers = tuple(h for h in handlers if h.has_done)
        # Innermost first: the retry closest to the service decides first.
        self.retriers = tuple(h for h in reversed(handlers) if h.has_upstream_error)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompiledChain) and other.handlers == self.handlers

    def __hash__(self) -> int:
        return hash(self.handlers)

    def responders(self, upto: int) -> list[Handler]:
        """Handlers that see a response produced at position ``upto``, innermost first."""
        return [h for h in reversed(self.handlers[:upto]) if h.has_response]


def run_request(ex: Exchange, start: int = 0) -> None:
    """Run the request hooks from ``start``; then the service, unless a handler stops it."""
    # Only ever called for a routed exchange whose router has a chain: no
    # asserts, this runs for every such request.
    route: RouteTarget = ex.route  # type: ignore[assignment]
    chain: CompiledChain = route.chain  # type: ignore[assignment]
    for on_request in chain.requesters[start]:
        verdict = on_request(ex)
        if verdict is not None:
            break
    else:
        ex.chain_pos = chain.size
        # call_service, inlined: this is every request's way to its service.
        ex.service_called = True
        if route.internal is None:
            route.service.serve(ex)  # type: ignore[union-attr]  # not internal: a service
        elif ex.request_done:
            route.internal(ex)  # internal services answer once the whole body is read
        return
    index = chain.positions[id(on_request)]
    ex.chain_pos = index + 1
    if verdict is PENDING:
        return
    if verdict is AFTER_BODY:
        if ex.request_done:
            run_request(ex, index + 1)
            return
        ex.waiting_body = True
        return
    if verdict is BODY_FIRST:
        ex.chain_pos = index  # this handler again, with the body
        ex.waiting_body = True
        return
    assert isinstance(verdict, Answer)
    send_answer(ex, verdict, index)


def call_service(ex: Exchange) -> None:
    route = ex.route
    assert route is not None
    ex.service_called = True
    if route.internal is not None:
        # Internal services answer once the request body has been read.
        if ex.request_done:
            route.internal(ex)
        return
    assert route.service is not None
    route.service.serve(ex)


def resume(ex: Exchange) -> None:
    """Go on with the chain after a PENDING handler finished its asynchronous work."""
    if ex.conn.transport is None or ex.response_state != 0:
        return  # the client left, or the exchange was answered meanwhile
    run_request(ex, ex.chain_pos)


def answer(ex: Exchange, response: Answer) -> None:
    """Answer the exchange from a PENDING handler (the one before ``chain_pos``)."""
    if ex.conn.transport is None or ex.response_state != 0:
        return
    send_answer(ex, response, ex.chain_pos - 1)


def answer_from(ex: Exchange, handler: Handler, response: Answer) -> None:
    """Answer for ``handler`` (which replaced the backend's response, or works asynchronously).

    The answer passes through the handlers outside ``handler``, as the backend's
    response would have.
    """
    if ex.conn.transport is None or ex.response_state == 2 or ex.answered:
        return
    route = ex.route
    assert route is not None and route.chain is not None
    ex.answered = True
    send_answer(ex, response, route.chain.handlers.index(handler))


def redispatch(ex: Exchange) -> None:
    """Send the exchange to its service again (retry), if the client is still there."""
    if ex.conn.transport is None or ex.response_state != 0:
        return
    ex.upstream = None
    call_service(ex)


def upstream_error(ex: Exchange, error: Exception) -> bool:
    """Offer a backend failure to the retrying handlers; True if one took it over."""
    route = ex.route
    if route is None or route.chain is None or not route.chain.retriers:
        return False
    if ex.response_state != 0 or ex.conn.transport is None:
        return False
    return any(handler.on_upstream_error(ex, error) for handler in route.chain.retriers)


def service_failed(ex: Exchange, error: HttpError) -> bool:
    """The service failed without answering (no server: 503; 502, 504 no retry took).

    As Traefik's middlewares see what its proxy writes beneath them, the
    error answer passes through the chain's response hooks (an errors page,
    custom headers). False, and the engine writes its error as usual, when
    nothing in the chain looks at responses or the error must close.
    """
    route = ex.route
    if (
        route is None
        or route.chain is None
        or not route.chain.has_responders
        or error.close
        or ex.response_state != 0
        or ex.conn.transport is None
    ):
        return False
    body = reason(error.status).encode() + b"\n"
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"X-Content-Type-Options", b"nosniff"),
    ]
    send_answer(ex, Answer(error.status, headers, body), len(route.chain.handlers))
    return True


def send_answer(ex: Exchange, response: Answer, position: int) -> None:
    """Write a middleware's answer, after the handlers outside ``position`` saw it.

    A handler may drop it (``head.replace()``, errors) and answer later with
    ``answer_from``: nothing is written now.
    """
    route = ex.route
    assert route is not None and route.chain is not None
    lines = [name + b": " + value + b"\r\n" for name, value in response.headers]
    head = ResponseHead(response.status, lines)
    for handler in route.chain.responders(position):
        handler.on_response(ex, head)
        if head.replaced:
            return
    body = response.body
    if head.sniff is not None:
        # The whole body is known: what a held head waits for is here.
        head.sniff(head, body)
        if ex.body_filter is not None:  # a sniff chose a filter (compress)
            head.body_filter, ex.body_filter = ex.body_filter, None
    if head.body_filter is not None:
        body = head.body_filter.feed(body) + head.body_filter.finish()
    head.remove("Content-Length")
    conn = ex.conn
    close = not ex.keep_alive or conn.closing or ex.upgrade is not None
    status = head.status
    parts = [f"HTTP/1.1 {status} {reason(status)}\r\n".encode(), *head.lines]
    if status not in (204, 304) and not 100 <= status < 200:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    elif ex.version == "1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not ex.is_head:
        parts.append(body)
    ex.status = status
    conn.respond(ex, b"".join(parts), close)


def finish(ex: Exchange, status: int) -> None:
    """Run the on_done hooks once; the exchange has ended, however it ended."""
    route = ex.route
    if route is None or route.chain is None or ex.finished:
        return
    ex.finished = True
    for handler in route.chain.finishers:
        handler.on_done(ex, status)


__all__ = ["PENDING", "CompiledChain", "answer", "resume", "run_request"]
