"""The middleware contract: what a handler may do to an exchange, and when.

A middleware is configured as Traefik configures it
(``http.middlewares.NAME.TYPE.{options}``) and built once per snapshot into a
``Handler``. A router's middlewares (chains flattened) become a tuple of
handlers; a router without middlewares has an empty tuple, and the engine then
calls the service directly: the machinery costs nothing where it is not used.

Theory of operation
-------------------
``on_request(ex)`` runs in chain order once the request head is parsed. It may
change the request (``ex.target``/``ex.path`` through ``set_path``, headers
through ``set_header``/``remove_header``), and returns one of:

- ``None``: go on to the next handler, and finally the service;
- an ``Answer``: stop here and send that response (it still passes through the
  ``on_response`` of the handlers before this one, as an outer Traefik
  middleware sees an inner one's answer);
- ``PENDING``: the handler works asynchronously (an auth subrequest, a shared
  rate limit) and later calls ``resume(ex)`` or ``answer(ex, Answer)``;
- ``AFTER_BODY``: run the rest of the chain once the whole request body has
  arrived (buffering);
- ``BODY_FIRST``: call this handler's ``on_request`` again once the whole
  request body has arrived (forwardAuth's ``forwardBody``); the body is in
  ``ex.pending`` then, as the engine holds it for the service.

``on_response(ex, head)`` runs in reverse chain order when the response head is
known; it may change the status and headers, or install a ``BodyFilter``
(compression) that rewrites the body as it streams.

``on_response`` may also call ``head.replace()``: the backend's response is
then dropped (its body read and discarded, its connection kept when it can be)
and the handler answers later with ``chain.answer_from(ex, handler, Answer)``
(the errors middleware), or ``head.replace(then)`` to be called back once the
dropped response was read (buffering retrying on ``ResponseCode()``). It may
set ``head.hold`` to a ``ResponseSpool``: the backend's whole body is held
there and the head goes out at its end with a Content-Length (buffering).
Or it may set ``head.sniff`` to a function of the first body bytes: the head
is then held until those bytes (or the end of an empty body) arrive, and the
function may still change the head (contentType).
``head.sniff_size`` asks for more than the first read: the head and the body
are held until that many bytes, the end of the body, or 100 ms after the
first bytes (Go's reverse proxy flushes that often), whichever comes first
(compress deciding on ``minResponseBodyBytes``); ``head.sniff_hold`` waits
without the 100 ms limit (buffering bounding a response by its size).

``on_upstream_error(ex, error)`` runs, innermost first, when the backend failed
before any byte of the response was sent to the client; returning True keeps
the exchange open for the handler to call ``chain.redispatch(ex)`` later (retry).

``on_done(ex, status)`` runs exactly once per exchange however it ended
(status 0 when no response was sent): in-flight counters and circuit
breakers rely on it.

``close()`` releases what a handler holds (a Redis client's connections,
timers). It is called once, when a new snapshot no longer uses the handler
and no exchange still running on an older snapshot holds it, and for every
handler at shutdown. It may return an awaitable (an async client's close);
it must leave late calls of the other hooks harmless. Builds that are refused
or only checked are never closed: a handler opens what it holds on first use
(as a Redis client connects), never in its builder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from proxy.http.headers import has_ctl, is_token

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.spool import ResponseSpool


class Pending:
    """Marker: the handler will resume the exchange itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PENDING = Pending("PENDING")
AFTER_BODY = Pending("AFTER_BODY")
BODY_FIRST = Pending("BODY_FIRST")


class Answer:
    """A response produced by a middleware instead of the service."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body


class BodyFilter:
    """Rewrites a response body as it streams (compression)."""

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


class ResponseHead:
    """A response head as middlewares see it: status and header lines, mutable.

    ``lines`` holds complete ``Name: value\\r\\n`` lines as they will be sent.
    Setting ``body_filter`` makes the engine drop Content-Length and re-frame.
    """

    __slots__ = (
        "body_filter",
        "hold",
        "lines",
        "replaced",
        "sniff",
        "sniff_hold",
        "sniff_size",
        "status",
    )

    def __init__(self, status: int, lines: list[bytes]) -> None:
        self.status = status
        self.lines = lines
        self.body_filter: BodyFilter | None = None
        self.replaced: bool | Callable[[Exchange], None] = False
        # A backend's body held whole before the head goes out (buffering), or None.
        self.hold: ResponseSpool | None = None
        self.sniff: Callable[[ResponseHead, bytes], None] | None = None
        self.sniff_size = 1  # body bytes ``sniff`` wants to see (see the module notes)
        self.sniff_hold = False  # True: no 100 ms flush, wait for sniff_size or the end

    def replace(self, then: Callable[[Exchange], None] | None = None) -> None:
        """Drop the backend's response; the handler answers with ``chain.answer_from``.

        ``then`` is called once the dropped response has been read to its end
        (buffering sends the request again from there).
        """
        self.replaced = then or True

    def get(self, name: str) -> str | None:
        key = name.lower().encode("latin-1") + b":"
        for line in self.lines:
            if line[: len(key)].lower() == key:
                return line[len(key) :].strip().decode("latin-1")
        return None

    def remove(self, name: str) -> None:
        key = name.lower().encode("latin-1") + b":"
        self.lines = [line for line in self.lines if line[: len(key)].lower() != key]

    def set(self, name: str, value: str | bytes) -> None:
        self.remove(name)
        self.add(name, value)

    def add(self, name: str, value: str | bytes) -> None:
        self.lines.append(header_line(name, value))


def add_sniff(
    head: ResponseHead,
    sniff: Callable[[ResponseHead, bytes], None],
    size: int,
    *,
    hold: bool = False,
) -> None:
    """Hold the head for ``size`` body bytes and call ``sniff``, after any sniff set before.

    Handlers set theirs innermost first: an inner contentType has named the
    type by the time an outer compress decides.
    """
    before = head.sniff
    head.sniff_size = max(head.sniff_size, size)
    head.sniff_hold = head.sniff_hold or hold
    if before is None:
        head.sniff = sniff
        return

    def both(held: ResponseHead, first: bytes) -> None:
        before(held, first)
        sniff(held, first)

    head.sniff = both


def header_line(name: str | bytes, value: str | bytes) -> bytes:
    """One header line, refusing anything that could split the message."""
    raw_name = name.encode("latin-1") if isinstance(name, str) else name
    raw_value = value.encode("utf-8") if isinstance(value, str) else value
    if not is_token(raw_name):
        raise ValueError(f"invalid header name {raw_name!r}")
    if has_ctl(raw_value):
        raise ValueError(f"invalid header value for {raw_name.decode('latin-1')}")
    return raw_name + b": " + raw_value + b"\r\n"


class Handler:
    """Base of every built middleware; override the hooks you need.

    ``hooks`` is computed per class so the chain runner only calls handlers
    that override a hook.
    """

    __slots__ = ("name",)

    has_request: ClassVar[bool] = False
    has_response: ClassVar[bool] = False
    has_done: ClassVar[bool] = False
    has_upstream_error: ClassVar[bool] = False
    has_close: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_request = cls.on_request is not Handler.on_request
        cls.has_response = cls.on_response is not Handler.on_response
        cls.has_done = cls.on_done is not Handler.on_done
        cls.has_upstream_error = cls.on_upstream_error is not Handler.on_upstream_error
        cls.has_close = cls.close is not Handler.close

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        return None

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        return None

    def on_done(self, ex: Exchange, status: int) -> None:
        return None

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        return False

    def close(self) -> Awaitable[None] | None:
        return None


class BuildError(ValueError):
    """A middleware's options cannot be built; the message names the problem."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key  # the option at fault, relative to the middleware (e.g. "regex")


class BuildContext:
    """What a builder may need besides its options: the snapshot being built."""

    def __init__(self, provider: str, services: dict[str, Any], **extra: Any) -> None:
        self.provider = provider
        self.services = services
        self.extra = extra


Builder = Callable[[str, Any, BuildContext], Handler]
