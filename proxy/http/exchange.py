"""One request's journey: its parsed head, the head forwarded upstream, the response framing.

An ``Exchange`` is created when the first byte of a request arrives and lives
until its response is written. It is also what the router matcher reads (it
satisfies ``proxy.rules.RequestView``), so routing needs no copy of the request.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote_to_bytes

from proxy.http.errors import (
    BadGateway,
    BadRequestTarget,
    GatewayTimeout,
    HttpError,
    error_response,
)
from proxy.http.headers import (
    CRLF,
    HASH,
    LAST_CHUNK,
    PERCENT,
    SPACE,
    STATUS_LINES,
    chunk_size_line,
    has_ctl,
    is_token,
)
from proxy.http.resolver import ResolveError
from proxy.middlewares.base import ResponseHead
from proxy.middlewares.chain import run_request, upstream_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.http.server import HttpConnection
    from proxy.http.spool import BodySpool, ResponseSpool
    from proxy.http.upstream import ServerPool, UpstreamConnection
    from proxy.middlewares.base import BodyFilter
    from proxy.runtime.snapshot import RouteTarget, Snapshot
    from proxy.services.healthcheck import PassiveHealthCheck
    from proxy.services.loadbalancer import Server

_clock: Final = time.perf_counter

# Characters a rewritten path keeps unescaped (RFC 3986 pchar and "/").
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"

# How the response body is framed towards the client.
FRAME_NONE: Final = 0  # no body (HEAD, 204, 304)
FRAME_LENGTH: Final = 1  # Content-Length passed on
FRAME_CHUNKED: Final = 2  # re-chunked (backend chunked, or close-delimited, to an HTTP/1.1 client)
FRAME_CLOSE: Final = 3  # delimited by closing (HTTP/1.0 client without a known length)

# Methods whose request may be replayed on a fresh connection (RFC 9110 9.2.2).
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# A head held for more body bytes (ResponseHead.sniff_size) goes out at the
# latest this long after the first bytes: Go's reverse proxy flushes every 100 ms.
HOLD_FLUSH: Final = 0.1

# Request bodies that arrive before the upstream connection is ready are held
# up to this size; past it the client is paused until the dial completes.
PENDING_BODY_LIMIT: Final = 64 * 1024
# Hosts an entry point remembers (EntryPoint.hosts), so that a new connection
# does not check and split its Host again; cleared when full, so random Hosts
# cannot make it grow.
HOSTS_CACHED: Final = 1024


class Exchange:
    __slots__ = (
        "answered",
        "body_filter",
        "body_waiter",
        "chain_pos",
        "chunked",
        "client_ip",
        "conn",
        "connection_tokens",
        "content_length",
        "expect_continue",
        "fields",
        "finished",
        "framing",
        "head_done",
        "held_head",
        "host",
        "host_header",
        "is_head",
        "keep_alive",
        "method",
        "method_raw",
        "original_target",
        "path",
        "pending",
        "pending_limit",
        "pending_size",
        "raw_query",
        "reached_backend",
        "replaced",
        "replay",
        "replay_room",
        "request_body_bytes",
        "request_done",
        "response_bytes",
        "response_close_delimited",
        "response_state",
        "retried",
        "retry_attempts",
        "route",
        "server_url",
        "service_called",
        "snapshot",
        "spool",
        "started",
        "status",
        "target",
        "upgrade",
        "upstream",
        "user",
        "version",
        "waiting_body",
        "watched",
        "xforwarded",
    )

    def __init__(self, conn: HttpConnection, snapshot: Snapshot) -> None:
        self.conn = conn
        self.snapshot = snapshot
        self.client_ip = conn.client_ip
        # For metrics and the access log: when the first byte arrived, the body
        # bytes each way, and the server the balancer picked.
        self.started = _clock()
        self.request_body_bytes = 0
        self.response_bytes = 0
        self.server_url = ""
        self.original_target: bytes | None = None  # the target before a middleware rewrote it
        self.retry_attempts = 0  # tries the retry middleware added
        self.user = ""  # the authenticated user, for the access log's ClientUsername
        # Request head, filled by the parser callbacks
        self.method = ""
        self.method_raw = b""
        self.target = b""
        self.version = "1.1"
        self.fields: list[tuple[bytes, bytes, bytes]] = []  # (lower name, name, value)
        self.host_header: bytes | None = None
        self.host = ""
        self.path = ""
        self.raw_query = ""
        self.chunked = False
        self.content_length: int | None = None
        self.keep_alive = True
        self.upgrade: bytes | None = None
        self.connection_tokens: set[bytes] | None = None
        self.expect_continue = False
        self.xforwarded: set[bytes] | None = None
        self.is_head = False
        # Progress
        self.head_done = False
        self.request_done = False
        self.route: RouteTarget | None = None
        self.upstream: UpstreamConnection | None = None
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.retried = False
        # Body bytes kept to send again (retry), ``replay_room`` more at most;
        # None: not kept, or past the room.
        self.replay: list[bytes] | None = None
        self.replay_room = 0
        self.reached_backend = False  # the failed try had written to a backend
        self.spool: BodySpool | None = None  # a body held whole (buffering)
        # (passive health check, server) when the service watches its servers' answers.
        self.watched: tuple[PassiveHealthCheck, Server] | None = None
        # Called once the request body is complete (a mirror waits for its copy).
        self.body_waiter: Callable[[Exchange], None] | None = None
        # Middlewares (see proxy.middlewares.base)
        self.chain_pos = 0
        self.waiting_body = False
        self.service_called = False
        self.finished = False
        self.pending_limit = PENDING_BODY_LIMIT
        self.body_filter: BodyFilter | None = None
        self.status = 0  # the status sent to the client, 0 until then
        # A middleware drops the backend's response and answers itself (True), or
        # calls this back once the dropped response was read (buffering's retry).
        self.replaced: bool | Callable[[Exchange], None] = False
        self.answered = False  # ... and has answered
        # Waiting for the first body bytes (head, chunked, connection, bytes held).
        self.held_head: tuple[ResponseHead, bool, int, list[bytes]] | None = None
        self.response_state = 0  # 0 nothing sent, 1 head sent, 2 complete
        self.framing = FRAME_NONE
        self.response_close_delimited = False

    # -- what the router matcher reads (proxy.rules.RequestView) ----------

    def header(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        # UTF-8 as rule values are; surrogateescape keeps any other byte distinct.
        return [
            value.decode("utf-8", "surrogateescape")
            for lname, _, value in self.fields
            if lname == key
        ]

    # -- what middlewares change -------------------------------------------

    @property
    def raw_path(self) -> bytes:
        """The path as it will be sent (percent-encoded), without the query."""
        return self.target.partition(b"?")[0]

    def set_path(self, path: str, raw_path: bytes | None = None) -> None:
        """Rewrite the request path; the query string is kept."""
        if raw_path is None:
            raw_path = quote(path, safe=_PATH_SAFE).encode("ascii")
        if has_ctl(raw_path) or SPACE in raw_path or HASH in raw_path:
            raise ValueError(f"invalid path {raw_path[:64]!r}")
        _, sep, query = self.target.partition(b"?")
        if self.original_target is None:
            self.original_target = self.target  # what the access log shows, as Traefik
        self.target = raw_path + sep + query
        self.path = path

    def set_header(self, name: str, value: str | bytes) -> None:
        """Replace every value of a request header (validated: no CR, LF or NUL)."""
        self.remove_header(name)
        self.add_header(name, value)

    def add_header(self, name: str, value: str | bytes) -> None:
        raw_name = name.encode("latin-1")
        raw_value = value.encode("utf-8") if isinstance(value, str) else value
        if not is_token(raw_name) or has_ctl(raw_value):
            raise ValueError(f"invalid header {name!r}")
        lname = raw_name.lower()
        if lname == b"host":
            self.host_header = raw_value
        self.fields.append((lname, raw_name, raw_value))

    def remove_header(self, name: str) -> None:
        lname = name.lower().encode("latin-1")
        self.fields = [field for field in self.fields if field[0] != lname]

    # -- request head -----------------------------------------------------

    def finish_head(self) -> None:
        """Derive routing fields from the raw target and Host (called once per request)."""
        target = self.target
        if target[:1] == b"/":
            path, _, query = target.partition(b"?")
        elif target == b"*" and self.method == "OPTIONS":
            path, query = b"*", b""
        else:
            # The Host sent beside an absolute-form target is replaced, but it
            # is still checked: an invalid one is refused, as Traefik does.
            if self.host_header is not None and not _VALID_HOST(self.host_header):
                raise BadRequestTarget(f"invalid Host {self.host_header[:64]!r}")
            path, query = self._absolute_form(target)
        if HASH in target:
            raise BadRequestTarget("fragment in request target")
        if PERCENT in path:
            path = unquote_to_bytes(path)
        self.path = path.decode("utf-8", "surrogateescape")
        self.raw_query = query.decode("utf-8", "surrogateescape")
        host = self.host_header
        if host is not None:
            conn = self.conn
            cached = conn.host_cache
            if cached[0] == host and host:
                self.host = cached[1]
            else:
                # A new connection, or another Host: most are Hosts this entry
                # point has seen, checked and derived before (bounded, see EntryPoint).
                hosts = conn.entrypoint.hosts
                found = hosts.get(host)
                if found is not None:
                    cached = found
                else:
                    if not _VALID_HOST(host):
                        raise BadRequestTarget(f"invalid Host {host[:64]!r}")
                    forwarded = b"X-Forwarded-Host: %b\r\nX-Forwarded-Port: %b\r\n" % (
                        host,
                        _host_port(host) or conn.default_port,
                    )
                    cached = (host, _routing_host(host), forwarded)
                    if host:
                        if len(hosts) >= HOSTS_CACHED:
                            hosts.clear()
                        hosts[host] = cached
                conn.host_cache = cached
                self.host = cached[1]
        self.is_head = self.method == "HEAD"

    def _absolute_form(self, target: bytes) -> tuple[bytes, bytes]:
        # RFC 9112 3.2.2: an absolute-form target's authority replaces Host.
        scheme, sep, rest = target.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https") or not rest:
            raise BadRequestTarget(f"invalid request target {target[:64]!r}")
        authority, slash, path_query = rest.partition(b"/")
        if not authority or b"@" in authority:
            raise BadRequestTarget("invalid authority in request target")
        self.host_header = authority
        self.fields = [f for f in self.fields if f[0] != b"host"]
        self.target = slash + path_query if slash else b"/"
        path, _, query = self.target.partition(b"?")
        return path, query

    def replayable(self) -> bool:
        return (
            not self.retried
            and self.method in IDEMPOTENT
            and self.content_length is None
            and not self.chunked
            and self.response_state == 0
        )

    # -- request body -----------------------------------------------------

    def body(self, data: bytes) -> None:
        self.request_body_bytes += len(data)
        if self.chunked:
            self.send(chunk_size_line(len(data)))
            self.send(data)
            self.send(CRLF)
        else:
            self.send(data)

    def body_done(self) -> None:
        if self.chunked:
            self.send(LAST_CHUNK)
        self.request_done = True
        if self.body_waiter is not None:
            waiter, self.body_waiter = self.body_waiter, None
            waiter(self)
        if self.upstream is not None and self.response_state == 0:
            self.conn.await_response(self)
        elif self.waiting_body:
            # A middleware asked for the whole body before the rest of the chain.
            self.waiting_body = False
            run_request(self, self.chain_pos)

    def keep_body(self, room: int) -> None:
        """Keep the request body (what arrived so far, and the rest) to send it again."""
        kept = list(self.pending) if self.pending else []
        self.replay_room = room - self.pending_size
        self.replay = kept if self.replay_room >= 0 else None

    def rewind_body(self) -> bool:
        """Queue the kept body for the next try; False when it was not (fully) kept."""
        if self.spool is not None:
            return True  # a spooled body (buffering) is sent again from the spool
        replay = self.replay
        if replay is None:
            return self.content_length in (None, 0) and not self.chunked
        self.pending = list(replay)
        self.pending_size = sum(len(part) for part in replay)
        if self.pending_size > self.pending_limit:
            self.conn.pause_reading_for(self.conn.PAUSE_PENDING)
        return True

    def send(self, data: bytes) -> None:
        replay = self.replay
        if replay is not None:
            self.replay_room -= len(data)
            if self.replay_room >= 0:
                replay.append(data)
            else:
                self.replay = None  # too large to send again: no more tries
        upstream = self.upstream
        if upstream is not None:
            conn = self.conn
            if conn.feeding:
                conn.batch_upstream(upstream, (data,))
                return
            transport = upstream.transport
            if transport is not None:
                transport.write(data)
            return
        if self.spool is not None:
            self.spool.write(data)
            return
        if self.pending is None:
            self.pending = [data]
        else:
            self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > self.pending_limit:
            self.conn.pause_reading_for(self.conn.PAUSE_PENDING)

    # -- upstream side ----------------------------------------------------

    def forward(self, pool: ServerPool, head: bytes) -> None:
        """Send this request to pool's server on an idle connection, or dial one."""
        parts = [head]
        if self.pending:
            parts.extend(self.pending)
            self.pending = None
            self.pending_size = 0
            self.conn.resume_reading_for(self.conn.PAUSE_PENDING)
        if self.spool is not None:
            parts.extend(self.spool.parts() or ())  # in memory: with the head
        conn = pool.take_idle()
        if conn is not None:
            conn.start(self, parts)
            if self.spool is not None and self.spool.file is not None:
                self.spool.pump(self, conn)
            if self.request_done:
                self.conn.await_response(self)
            return
        task = asyncio.ensure_future(pool.dial())
        task.add_done_callback(lambda done: self._dialed(done, parts))

    def _dialed(self, task: asyncio.Future[UpstreamConnection], parts: list[bytes]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if isinstance(error, TimeoutError):
                failure: HttpError = GatewayTimeout("dial timeout")
            elif isinstance(error, ResolveError):
                failure = BadGateway(str(error))
            else:
                failure = BadGateway(f"dial failed: {error}")
            if self.conn.transport is not None:
                self.upstream_failed(failure, None)
            return
        conn = task.result()
        if conn.transport is None:
            # The backend closed the connection the moment it accepted it.
            if self.conn.transport is not None and self.response_state == 0:
                self.upstream_failed(BadGateway("backend closed the connection"), None)
            return
        if self.conn.transport is None or self.response_state == 2:
            # The client left (or was answered) while we dialled. The connection
            # is closed rather than pooled: a burst of abandoned requests must not
            # leave a burst of idle sockets behind.
            conn.close()
            return
        if self.pending:
            parts.extend(self.pending)
            self.pending = None
            self.pending_size = 0
            self.conn.resume_reading_for(self.conn.PAUSE_PENDING)
        conn.start(self, parts)
        if self.spool is not None and self.spool.file is not None:
            self.spool.pump(self, conn)
        if self.request_done:
            self.conn.await_response(self)

    def retry_fresh(self, pool: ServerPool) -> None:
        self.retried = True
        self.upstream = None
        service = self.route.service if self.route is not None else None
        if service is None:
            self.upstream_failed(BadGateway("backend closed the connection"), None)
            return
        service.serve(self)

    def upstream_failed(self, error: HttpError, upstream: UpstreamConnection | None) -> None:
        self.upstream = None
        self.reached_backend = upstream is not None
        if self.watched is not None:
            self.watched[0].failed(self.watched[1])
        if self.route is not None and self.route.chain is not None and upstream_error(self, error):
            return  # a retrying middleware took it over
        self.conn.exchange_failed(self, error)

    def interim_response(self, status: int, head: bytes) -> None:
        """A 1xx before the answer: 100 Continue to a client that asked for it,
        any other (103 Early Hints, 102) to every HTTP/1.1 client, as Go's
        ReverseProxy (and so Traefik v3) passes them on; none to an HTTP/1.0
        client, which cannot expect one (RFC 9110 15.2)."""
        if self.version == "1.1" and (status != 100 or self.expect_continue):
            self.conn.write(head)

    def response_head(self, upstream: UpstreamConnection, status: int, parts: list[bytes]) -> None:
        """Queue the response head: the backend's end-to-end lines, then framing and Connection.

        ``parts`` still holds the backend's Content-Length line where it had one:
        Turnout keeps that framing; otherwise it re-chunks or delimits by closing.
        """
        conn = self.conn
        self.response_state = 1
        if self.watched is not None:
            self.watched[0].answered(self.watched[1], status)
        has_length = upstream.has_length
        route = self.route
        head = None
        if route is not None and route.chain is not None and route.chain.has_responders:
            # The chain's response hooks, innermost first, on a head they may change.
            head = ResponseHead(status, parts)
            for on_response in route.chain.response_hooks:
                on_response(self, head)
            if head.replaced:
                # A middleware answers instead: the backend's body is read and dropped.
                self.replaced = head.replaced
                self.response_state = 0
                self.framing = FRAME_NONE
                self.conn.response_started(self)  # no response timeout while it answers
                return
            status, parts = head.status, head.lines
            if head.body_filter is not None:
                # The body changes as it streams: its length is no longer known.
                head.remove("Content-Length")
                parts = head.lines
                has_length = False
                self.body_filter = head.body_filter
        self.status = status
        chunked = False
        if self.is_head or status in (204, 304):
            self.framing = FRAME_NONE
        elif has_length and not upstream.chunked:
            self.framing = FRAME_LENGTH
        else:
            self.response_close_delimited = not upstream.chunked and not upstream.has_length
            if self.version == "1.1":
                self.framing = FRAME_CHUNKED
                chunked = True
            else:
                self.framing = FRAME_CLOSE
                self.keep_alive = False
        if not self.request_done or self.upgrade is not None:
            # An upgrade the backend declined leaves the client parser in
            # upgrade mode; and when the backend answered before the request
            # body ended, the rest of the body can't be told apart from a next
            # request: either way both sides close.
            self.keep_alive = False
        if not self.keep_alive or conn.closing:
            connection = 2
        elif self.version == "1.0":
            connection = 1
        else:
            connection = 0
        conn.response_started(self)
        if (
            head is not None
            and self.framing != FRAME_NONE
            and (head.hold is not None or head.sniff is not None)
        ):
            # Held until the first body bytes (a middleware may still change
            # it), or, with ``hold``, until the whole body is held.
            self.held_head = (head, chunked, connection, [])
            return
        # Straight into the client's output: joined with the body in one write
        # (the head is small, so it is left out of out_size).
        out = conn.out
        out.append(STATUS_LINES[status])
        out.extend(parts)
        out.append(_HEAD_ENDINGS[chunked, connection])

    def _release_head(self, first: bytes) -> None:
        held = self.held_head
        assert held is not None
        self.held_head = None
        head, chunked, connection, _ = held
        sniff = head.sniff
        assert sniff is not None
        sniff(head, first)
        self.status = head.status
        out = self.conn.out
        out.append(STATUS_LINES[head.status])
        out.extend(head.lines)
        out.append(_HEAD_ENDINGS[chunked, connection])

    def response_body(self, data: bytes) -> None:
        held = self.held_head
        if held is not None:
            head, parts = held[0], held[3]
            hold = head.hold
            if hold is not None:
                if not hold.write(data):
                    self._hold_overflow(hold)
                return
            if head.sniff_size > 1:
                parts.append(data)
                size = sum(len(part) for part in parts)
                if size < head.sniff_size:
                    if len(parts) == 1 and not head.sniff_hold:
                        asyncio.get_running_loop().call_later(HOLD_FLUSH, self.release_held)
                    return  # bounded: sniff_size plus one read
                data = b"".join(parts)
            self._release_head(data)
        if self.body_filter is not None:
            data = self.body_filter.feed(data)
            if not data:
                return
        if self.framing == FRAME_CHUNKED:
            self.response_bytes += len(data)  # body bytes, as Traefik counts them
            conn = self.conn
            conn.write(chunk_size_line(len(data)))
            conn.write(data)
            conn.write(CRLF)
        elif self.framing != FRAME_NONE:
            self.response_bytes += len(data)
            self.conn.write(data)

    def release_held(self) -> None:
        """Send a held head, and the body bytes held with it, now."""
        held = self.held_head
        if held is None or self.conn.transport is None:
            return
        data = b"".join(held[3])
        self._release_head(data)
        if data:
            self.response_body(data)
            self.conn.flush()

    def response_finished(self, upstream: UpstreamConnection, reusable: bool) -> None:
        if self.held_head is not None:
            if self.held_head[0].hold is not None:
                self._release_hold(upstream, reusable)  # buffering: the whole body is here
                return
            held = self.held_head[3]
            if held:
                self.release_held()
            else:
                self._release_head(b"")
        if self.replaced:
            # The backend's response was dropped; the middleware answers (or did).
            then = self.replaced
            self._give_back(upstream, reusable)
            if callable(then):
                self.replaced = False
                then(self)
            return
        # _give_back and _end_response, inlined: every response ends here, and the
        # two calls cost about 1 % of a small request's instructions.
        if self.body_filter is not None:
            tail = self.body_filter.finish()
            self.body_filter = None
            if tail:
                self.response_body(tail)
        conn = self.conn
        if self.framing == FRAME_CHUNKED:
            conn.write(LAST_CHUNK)
        self.response_state = 2
        self.upstream = None
        if reusable and self.request_done and not self.response_close_delimited:
            upstream.pool.release(upstream, conn.clock.now)
            if conn.writing_paused and upstream.transport is not None:
                upstream.transport.resume_reading()
        else:
            upstream.close()
        conn.exchange_done(self, close=not self.keep_alive or self.framing == FRAME_CLOSE)

    def _give_back(self, upstream: UpstreamConnection, reusable: bool) -> None:
        """The backend's response is read: its connection goes back to the pool, or closes."""
        self.upstream = None
        conn = self.conn
        if reusable and self.request_done and not self.response_close_delimited:
            upstream.pool.release(upstream, conn.clock.now)
            if conn.writing_paused and upstream.transport is not None:
                upstream.transport.resume_reading()  # paused for the client; idle now
        else:
            upstream.close()

    def _end_response(self) -> None:
        """The body's last bytes out (a filter's tail, the last chunk); the exchange ends."""
        if self.body_filter is not None:
            tail = self.body_filter.finish()
            self.body_filter = None
            if tail:
                self.response_body(tail)
        if self.framing == FRAME_CHUNKED:
            self.conn.write(LAST_CHUNK)
        self.response_state = 2
        self.conn.exchange_done(self, close=not self.keep_alive or self.framing == FRAME_CLOSE)

    def _release_hold(self, upstream: UpstreamConnection, reusable: bool) -> None:
        """The whole body is held (buffering): send the head with its length, then the body."""
        held = self.held_head
        assert held is not None
        self.held_head = None
        head, _, connection, _ = held
        hold = head.hold
        assert hold is not None
        self._give_back(upstream, reusable)
        conn = self.conn
        if not hold.finish():
            self._hold_overflow(hold)  # a filter inside buffering wrote past its maximum
            return
        if head.sniff is not None:
            head.sniff(head, hold.first(head.sniff_size))
        head.remove("Content-Length")
        chunked = False
        if self.body_filter is not None:
            # A filter (compress, outside the buffering) rewrites the body as it goes.
            if self.version == "1.1":
                self.framing = FRAME_CHUNKED
                chunked = True
            else:
                self.framing = FRAME_CLOSE
                self.keep_alive = False
                connection = 2
        else:
            self.framing = FRAME_LENGTH
            head.lines.append(b"Content-Length: %d\r\n" % hold.size)
        self.status = head.status
        out = conn.out
        out.append(STATUS_LINES[head.status])
        out.extend(head.lines)
        out.append(_HEAD_ENDINGS[chunked, connection])
        hold.send(self, self._end_response)

    def drop_upstream(self) -> None:
        """Let go of the backend connection and close it: what is left of its
        response is not wanted (or cannot be trusted)."""
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.exchange = None
            upstream.close()

    def _hold_overflow(self, hold: ResponseSpool) -> None:
        """The held body passed maxResponseBodyBytes: the middleware answers (a 500)."""
        self.held_head = None
        self.drop_upstream()  # the rest of that body is not wanted
        self.response_state = 0  # nothing was sent: the answer goes out whole
        self.framing = FRAME_NONE
        hold.overflow(self)

    def response_aborted(self) -> None:
        """The backend died mid-response: the client must see a truncated message."""
        self.upstream = None
        held = self.held_head
        if (held is not None and held[0].hold is not None) or callable(self.replaced):
            self._unsent_aborted()
            return
        self.response_state = 2
        self.conn.abort()

    def _unsent_aborted(self) -> None:
        """The backend died in the middle of a body nothing of which was sent yet.

        Buffering held it, or a retry was reading it to drop it and try again.
        Traefik's proxy panics on the failed copy, the panic crosses the buffer
        or the retry and its recovery handler, outside every middleware, writes
        a whole 500 (the backend's head never reached the client): so does Turnout.
        """
        self.held_head = None
        self.replaced = False
        self.framing = FRAME_NONE
        self.status = 500
        self.response_state = 2
        conn = self.conn
        close = not self.keep_alive or not self.request_done or conn.closing
        conn.write(error_response(500, close))
        conn.exchange_done(self, close=close)

    def upgraded(self, upstream: UpstreamConnection, head: bytes, rest: bytes) -> None:
        self.response_state = 2
        self.conn.start_tunnel(self, upstream, head, rest)


# The end of a response head, by (chunked framing?, Connection: 0 none, 1 keep-alive, 2 close).
_HEAD_ENDINGS: Final = {
    (chunked, connection): (b"Transfer-Encoding: chunked\r\n" if chunked else b"")
    + (b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n")[connection]
    + b"\r\n"
    for chunked in (False, True)
    for connection in (0, 1, 2)
}


# RFC 3986 authority without userinfo: reg-name, IPv4 or [IPv6], optional port.
# Commas, spaces, '@' and '/' are refused: two hosts or a path in Host are how
# requests get routed on one host and served on another.
_VALID_HOST: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::[0-9]{0,5})?"
).fullmatch


def _routing_host(host: bytes) -> str:
    """Host as the Host matcher compares it: lower-cased, without port or IPv6 brackets."""
    text = host.decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    colon = text.rfind(":")
    if colon >= 0:
        return text[:colon]
    return text


def forward_head(ex: Exchange, server_host: bytes, pass_host_header: bool) -> bytes:
    """The request head sent upstream: origin-form, HTTP/1.1, our own framing and X-Forwarded-*.

    Hop-by-hop headers were dropped while parsing; what is left is copied as it
    arrived. Traefik's forwardedheaders rules: from an untrusted client every
    X-Forwarded-* header was dropped, so all are set here; from a trusted one
    only the missing ones are set and X-Forwarded-For is appended to.
    """
    conn = ex.conn
    # Go's transport sends the server's host:port when the request has no Host.
    host = ex.host_header if pass_host_header and ex.host_header is not None else server_host
    parts = [ex.method_raw, b" ", ex.target, b" HTTP/1.1\r\n"]
    parts.append(b"Host: " + host + CRLF)
    seen = ex.xforwarded
    # Headers Turnout sets itself; a trusted client's X-Forwarded-For is extended below.
    skip = _SET_BY_PROXY if seen is not None else _HOST_ONLY
    for lname, name, value in ex.fields:
        if lname not in skip:
            parts.append(name + b": " + value + CRLF)
    if ex.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif ex.content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % ex.content_length)
    if ex.upgrade is not None:
        parts.append(b"Connection: Upgrade\r\nUpgrade: " + ex.upgrade + CRLF)
    client = conn.client_ip_bytes
    if seen is None:
        # X-Forwarded-For, X-Real-Ip, -Server and -Proto: fixed per connection.
        parts.append(conn.forwarded_block_ws if ex.upgrade else conn.forwarded_block)
        if ex.host_header:
            parts.append(conn.host_cache[2])  # X-Forwarded-Host and -Port
        else:
            parts.append(b"X-Forwarded-Port: " + conn.default_port + CRLF)
    else:
        proto = b"X-Forwarded-Proto: ws\r\n" if ex.upgrade else b"X-Forwarded-Proto: http\r\n"
        prior = [value for lname, _, value in ex.fields if lname == b"x-forwarded-for"]
        if prior:
            parts.append(b"X-Forwarded-For: " + b", ".join([*prior, client]) + CRLF)
        else:
            parts.append(b"X-Forwarded-For: " + client + CRLF)
        if b"x-real-ip" not in seen:
            parts.append(b"X-Real-Ip: " + client + CRLF)
        if b"x-forwarded-proto" not in seen:
            parts.append(proto)
        if b"x-forwarded-host" not in seen and ex.host_header:
            parts.append(b"X-Forwarded-Host: " + ex.host_header + CRLF)
        if b"x-forwarded-port" not in seen:
            parts.append(b"X-Forwarded-Port: " + _forwarded_port(ex) + CRLF)
        parts.append(conn.forwarded_server)
    parts.append(CRLF)
    return b"".join(parts)


_HOST_ONLY: Final = frozenset({b"host"})
_SET_BY_PROXY: Final = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-server"})


def _forwarded_port(ex: Exchange) -> bytes:
    # Traefik: the port of the Host header, else the scheme's default port.
    host = ex.host_header
    return (_host_port(host) if host else b"") or ex.conn.default_port


def _host_port(host: bytes) -> bytes:
    colon = host.rfind(b":")
    if colon >= 0 and host.rfind(b"]") < colon:
        return host[colon + 1 :]
    return b""
