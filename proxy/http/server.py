"""Client side: the asyncio Protocol that serves one downstream HTTP/1.x connection.

Theory of operation
-------------------
httptools parses the byte stream and calls back into this object. Each request
becomes an ``Exchange`` when its first byte arrives. When its head is complete
the exchange is routed on the snapshot that was live when it began, and sent
upstream at once: request bodies are streamed as they arrive, never collected.

Requests are answered strictly in order. ``active`` is the exchange whose
response is being written; a pipelined request whose head completes while one
is active waits in ``queue`` and reading pauses until it is its turn, so a
pipelining client can make Turnout hold at most one read buffer.

Reading pauses for several independent reasons (backend not draining, a queued
request, a body held while dialling, an upgrade in progress): a bit mask keeps
them apart so resuming one reason never resumes reading while another holds.

Timeouts use one deadline per connection, checked by the entry point's sweeper
a few times a second, so no timer is created or cancelled per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sys
import termios
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import httptools

from proxy.http.chunks import ChunkScanner
from proxy.http.errors import (
    BadRequest,
    GatewayTimeout,
    HeadersTooLarge,
    HttpError,
    NotImplementedCoding,
    RequestTimeout,
    UriTooLong,
    VersionNotSupported,
    error_response,
)
from proxy.http.exchange import Exchange
from proxy.http.flow import JOIN_LIMIT, WRITE_HIGH, WRITE_LOW
from proxy.http.headers import FORWARDED, HOP_BY_HOP, SPACE, TAB
from proxy.middlewares.chain import finish as finish_chain
from proxy.middlewares.chain import run_request, service_failed

if TYPE_CHECKING:
    from proxy.http.upstream import UpstreamConnection
    from proxy.runtime.entrypoint import Clock, EntryPoint
    from proxy.runtime.snapshot import RouteTarget

log = logging.getLogger("turnout.http")

# Deadline kinds
D_NONE: Final = 0
D_IDLE: Final = 1  # between requests: close quietly
D_READ: Final = 2  # reading a request: 408
D_RESPONSE: Final = 3  # waiting for the backend's response head: 504


_SPECIAL: Final = HOP_BY_HOP | FORWARDED | {b"host", b"content-length", b"expect"}


class HttpConnection(asyncio.Protocol):
    # Final: class constants also when compiled (mypyc makes other class-level
    # assignments instance attributes).
    PAUSE_UPSTREAM: Final = 1
    PAUSE_PIPELINE: Final = 2
    PAUSE_PENDING: Final = 4
    PAUSE_UPGRADE: Final = 8

    __slots__ = (
        "active",
        "batch",
        "batch_size",
        "batch_target",
        "chunk_scanner",
        "client_ip",
        "client_ip_bytes",
        "client_port",
        "clock",
        "closing",
        "deadline",
        "deadline_kind",
        "default_port",
        "discarding",
        "entrypoint",
        "feeding",
        "forwarded_block",
        "forwarded_block_ws",
        "forwarded_server",
        "head_bytes",
        "head_carry",
        "head_count",
        "head_size",
        "host_cache",
        "message_start",
        "out",
        "out_size",
        "parser",
        "paused",
        "queue",
        "read_data",
        "receiving",
        "requests",
        "started",
        "transport",
        "trusted",
        "tunnel",
        "tunnel_buffer",
        "write_deadline",
        "write_pending",
        "writing_paused",
    )

    def __init__(self, entrypoint: EntryPoint) -> None:
        # Per-connection state
        self.entrypoint = entrypoint
        self.clock: Clock = entrypoint.clock
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.client_port = 0
        self.client_ip_bytes = b""
        self.trusted = False
        # X-Forwarded-* lines that depend only on the connection (untrusted clients)
        self.forwarded_block = b""
        self.forwarded_block_ws = b""
        # (Host header, routing host, X-Forwarded-Host and -Port lines) of the last
        # request: keep-alive clients send the same Host again and again.
        self.host_cache: tuple[bytes, str, bytes] = (b"", "", b"")
        self.forwarded_server = entrypoint.forwarded_server
        self.default_port = b"80"
        self.paused = 0
        self.writing_paused = False
        self.closing = False
        self.deadline = 0.0
        self.deadline_kind = D_NONE
        self.write_deadline = 0.0
        self.write_pending = 0  # bytes not yet taken by the client when the stall clock started
        self.started = 0.0
        self.requests = 0
        self.discarding = False
        # Bytes for the upstream produced while httptools parses one read: sent
        # together when the read was parsed, dropped if it turned out malformed.
        self.feeding = False
        self.batch: list[bytes] = []
        self.batch_size = 0
        self.batch_target: UpstreamConnection | None = None
        self.out: list[bytes] = []
        self.out_size = 0
        self.tunnel: UpstreamConnection | None = None
        self.tunnel_buffer: list[bytes] = []
        # Per-request state
        self.receiving: Exchange | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange | HttpError] = deque()
        self.head_bytes = 0
        self.head_size = 0
        self.head_count = 0
        # Chunked request bodies: the chunk lines are checked ahead of llhttp
        # (proxy/http/chunks.py), which needs where in a read the body starts.
        self.chunk_scanner: ChunkScanner | None = None
        self.read_data = b""
        self.message_start = 0  # 0: at the read's start; -1: in an earlier read; -2: unknown
        self.head_carry = b""  # last bytes of the previous read while a head is incomplete

    @property
    def remote_address(self) -> str:
        """The client's ``ip:port`` (``[ip]:port`` for IPv6): the access log's ClientAddr."""
        ip = self.client_ip
        return f"[{ip}]:{self.client_port}" if ":" in ip else f"{ip}:{self.client_port}"

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accept(transport, transport.get_extra_info("peername"))

    def accept(self, transport: asyncio.BaseTransport, peer: tuple[Any, ...] | None) -> None:
        """Serve a connection whose client is ``peer``: the socket's peer, or the
        address a PROXY protocol header gave (proxy/tcp/proxy_header.py)."""
        entrypoint = self.entrypoint
        limit = entrypoint.max_connections
        if limit and len(entrypoint.connections) >= limit:
            # Full: reset at once. Accepting and resetting keeps the backlog
            # draining (no accept loop spinning on a full queue) and costs the
            # connections already open nothing.
            transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)  # type: ignore[attr-defined]
        ip = peer[0] if peer else ""
        if "%" in ip:
            ip = ip.split("%", 1)[0]
        self.client_ip = ip
        # The address as text only when asked for (remote_address): most
        # requests are logged by no one.
        self.client_port = peer[1] if peer else 0
        self.started = self.clock.time()
        # Built once per client IP, not per connection (EntryPoint.client).
        facts = entrypoint.clients.get(ip) or entrypoint.client(ip)
        self.client_ip_bytes, self.trusted, self.forwarded_block, self.forwarded_block_ws = facts
        entrypoint.connections.add(self)
        if entrypoint.closing:
            self.closing = True
        self._set_deadline(D_READ, entrypoint.read_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.entrypoint.connections.discard(self)
        self.deadline_kind = D_NONE
        active = self.active
        if active is not None and active.response_state == 1:
            # Cut in the middle of its response: it still counts, with its status.
            observe = self.entrypoint.observe
            if observe is not None:
                observe(active)
        for exchange in (self.active, self.receiving):
            if exchange is not None and exchange.route is not None and exchange.route.chain:
                finish_chain(exchange, exchange.status if exchange.response_state == 2 else 0)
            if exchange is not None:
                exchange.drop_upstream()
                exchange.response_state = 2
        self.active = None
        self.receiving = None
        self.queue.clear()
        self.out.clear()
        if self.tunnel is not None:
            tunnel = self.tunnel
            self.tunnel = None
            tunnel.exchange = None
            tunnel.close()
        # The parser holds bound methods of this connection: a reference cycle
        # that only the garbage collector would free. Broken here, the connection
        # is freed when the transport lets go of it, and the next one reuses its
        # (still cached) memory. No callback reaches a lost connection.
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.write(data)
            return
        if self.paused & self.PAUSE_UPGRADE:
            # Bytes after an upgrade request, before the backend agreed: hold them.
            self.tunnel_buffer.append(data)
            return
        if self.discarding:
            return
        receiving = self.receiving
        if receiving is None or not receiving.head_done:
            self.head_bytes += len(data)
        self.read_data = data
        self.message_start = 0 if receiving is None else -1
        self.feeding = True
        try:
            scanner = self.chunk_scanner
            if scanner is not None:
                scanner.feed(data)  # a chunked body going on from an earlier read
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._upgrade_requested(data[offset:])
        except httptools.HttpParserError as exc:
            self.feeding = False
            if not (self.discarding and self.receiving is None):
                cause = exc.__context__
                if isinstance(cause, HttpError):
                    self._request_error(cause)
                elif isinstance(cause, Exception):
                    self._unexpected_error(cause)
                else:
                    self._request_error(_parser_error(exc))
                return
            # else: llhttp refuses bytes after a request that said Connection:
            # close; they are dropped, and what came before them still goes out.
        except HttpError as exc:
            self.feeding = False
            self._request_error(exc)
            return
        self.feeding = False
        receiving = self.receiving
        if receiving is not None and not receiving.head_done:
            if self.head_bytes > self.entrypoint.max_header_bytes:
                self._request_error(HeadersTooLarge("request head too large"))
                return
            self.head_carry = data[-3:]
        if self.batch:
            self._send_batch()

    def batch_upstream(self, target: UpstreamConnection, parts: Iterable[bytes]) -> None:
        if self.batch_target is not target:
            if self.batch:
                self._send_batch()
            self.batch_target = target
        for part in parts:
            self.batch.append(part)
            self.batch_size += len(part)

    def _send_batch(self) -> None:
        target = self.batch_target
        batch = self.batch
        self.batch = []
        size = self.batch_size
        self.batch_size = 0
        self.batch_target = None
        if target is None or target.transport is None:
            return
        if len(batch) == 1:
            target.transport.write(batch[0])
        elif size <= JOIN_LIMIT:
            target.transport.write(b"".join(batch))
        else:
            target.transport.writelines(batch)

    def eof_received(self) -> bool | None:
        tunnel = self.tunnel
        if tunnel is not None and tunnel.transport is not None and tunnel.transport.can_write_eof():
            tunnel.transport.write_eof()
            return True
        return None

    def pause_writing(self) -> None:
        self.writing_paused = True
        write_timeout = self.entrypoint.write_timeout
        if write_timeout > 0:
            # writeTimeout bounds a stall: a client that stops reading while a
            # response waits is dropped, one that reads slowly but steadily is not.
            self.write_deadline = self.clock.time() + write_timeout
            self.write_pending = self._unsent()
        for exchange in (self.active,):
            if exchange is not None and exchange.upstream is not None:
                transport = exchange.upstream.transport
                if transport is not None:
                    transport.pause_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.write_deadline = 0.0
        exchange = self.active
        if exchange is not None and exchange.upstream is not None:
            transport = exchange.upstream.transport
            if transport is not None:
                transport.resume_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    # -- reading control --------------------------------------------------

    def pause_reading_for(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None:
            self.transport.resume_reading()

    # -- writing ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the client; flush() sends them in as few writes as possible."""
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size > JOIN_LIMIT:
            self.flush()

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        transport = self.transport
        if transport is not None:
            if len(out) == 1:
                transport.write(out[0])
            elif self.out_size <= JOIN_LIMIT:
                transport.write(b"".join(out))
            else:
                transport.writelines(out)
        self.out = []
        self.out_size = 0

    def _unsent(self) -> int:
        """Bytes written but not yet taken by the client: ours plus the kernel's send queue.

        uvloop's buffer alone can sit still for seconds while a slow client
        drains a multi-megabyte socket buffer, so the kernel's queue counts too.
        """
        transport = self.transport
        if transport is None:
            return 0
        unsent = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                unsent += int.from_bytes(queued, sys.byteorder, signed=True)
        return unsent

    def transport_write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.abort()

    # -- deadlines ----------------------------------------------------------

    def _set_deadline(self, kind: int, timeout: float) -> None:
        if timeout > 0:
            self.deadline = self.clock.time() + timeout
            self.deadline_kind = kind
        else:
            self.deadline_kind = D_NONE

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper; acts when this connection's deadline has passed."""
        if self.write_deadline:
            # While writing is paused, every sweep looks for progress: the stall
            # clock restarts whenever the client took bytes since the last sweep.
            unsent = self._unsent()
            if unsent < self.write_pending:
                self.write_pending = unsent
                self.write_deadline = now + self.entrypoint.write_timeout
            elif self.write_deadline <= now:
                self.write_deadline = 0.0
                self.abort()
                return
        kind = self.deadline_kind
        if kind == D_NONE or self.deadline > now:
            return
        self.deadline_kind = D_NONE
        if kind == D_IDLE:
            self._close()
        elif kind == D_READ:
            active = self.active or self.receiving
            if active is None:
                self._close()  # not a byte sent: nobody to answer (browsers pre-connect)
            elif active.response_state != 0:
                self.abort()
            else:
                self._answer_and_close(RequestTimeout("request not received in time"))
        elif kind == D_RESPONSE:
            active = self.active
            if active is not None and active.response_state == 0:
                active.drop_upstream()
                active.upstream_failed(GatewayTimeout("backend did not answer in time"), None)

    def await_response(self, exchange: Exchange) -> None:
        if exchange is self.active and exchange.response_state == 0:
            self._set_deadline(D_RESPONSE, exchange.route.response_timeout if exchange.route else 0)

    def response_started(self, exchange: Exchange) -> None:
        if exchange.request_done:
            self.deadline_kind = D_NONE

    # -- httptools callbacks ------------------------------------------------

    def on_message_begin(self) -> None:
        entrypoint = self.entrypoint
        ex = self.receiving = Exchange(self, entrypoint.snapshot)
        self.head_size = 0
        self.head_count = 0
        self.requests += 1
        # Traefik's keepAliveMaxRequests / keepAliveMaxTime: answer this one, then close.
        max_requests = entrypoint.keep_alive_max_requests
        max_time = entrypoint.keep_alive_max_time
        if (max_requests and self.requests >= max_requests) or (
            max_time and self.clock.time() - self.started >= max_time
        ):
            ex.keep_alive = False
        if self.active is None:
            self._set_deadline(D_READ, self.entrypoint.read_timeout)

    def on_url(self, url: bytes) -> None:
        receiving = self.receiving
        assert receiving is not None
        receiving.target += url
        if len(receiving.target) > self.entrypoint.max_target:
            raise UriTooLong("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        receiving = self.receiving
        assert receiving is not None
        self.head_size += len(name) + len(value) + 4
        if receiving.head_done:
            # A trailer: never merged into the forwarded headers (they are long
            # gone upstream), only bounded.
            if self.head_size > self.entrypoint.max_header_bytes:
                raise HeadersTooLarge("trailers too large")
            return
        self.head_count += 1
        if self.head_count > self.entrypoint.max_header_count:
            raise HeadersTooLarge("too many headers")
        lname = name.lower()
        if lname in _SPECIAL:
            self._special_header(receiving, lname, name, value)
        else:
            receiving.fields.append((lname, name, value))

    def _special_header(self, ex: Exchange, lname: bytes, name: bytes, value: bytes) -> None:
        if lname == b"host":
            if ex.host_header is not None:
                raise BadRequest("duplicate Host header")
            if value and (value[-1] == SPACE or value[-1] == TAB):
                value = value.rstrip(b" \t")  # trailing whitespace is not part of a value
            ex.host_header = value
            ex.fields.append((lname, name, value))
        elif lname == b"content-length":
            if ex.content_length is not None:
                raise BadRequest("duplicate Content-Length")
            value = value.rstrip(b" \t")
            if not value.isdigit() or len(value) > 18:
                raise BadRequest("invalid Content-Length")
            ex.content_length = int(value)
        elif lname == b"transfer-encoding":
            if ex.chunked:
                raise BadRequest("duplicate Transfer-Encoding")
            if value.strip().lower() != b"chunked":
                if b"chunked" in value.lower():
                    raise BadRequest("invalid Transfer-Encoding")
                raise NotImplementedCoding("unsupported Transfer-Encoding")
            ex.chunked = True
        elif lname == b"connection":
            # The usual values first: a comparison, not a split.
            if value == b"close":
                ex.keep_alive = False
                return
            if value == b"keep-alive":
                return
            for token in value.lower().split(b","):
                token = token.strip()
                if token == b"close":
                    ex.keep_alive = False
                elif token and token not in (b"keep-alive", b"upgrade"):
                    # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
                    if ex.connection_tokens is None:
                        ex.connection_tokens = set()
                    ex.connection_tokens.add(token)
        elif lname == b"upgrade":
            ex.upgrade = value
        elif lname == b"expect":
            if value.lower() == b"100-continue":
                ex.expect_continue = True
            ex.fields.append((lname, name, value))
        elif lname in FORWARDED:
            if self.trusted:
                if ex.xforwarded is None:
                    ex.xforwarded = set()
                ex.xforwarded.add(lname)
                ex.fields.append((lname, name, value))
        elif lname == b"te" and value.strip().lower() == b"trailers":
            ex.fields.append((lname, name, value))
        # Any other hop-by-hop header is dropped.

    def on_headers_complete(self) -> None:
        ex = self.receiving
        assert ex is not None
        if self.head_size > self.entrypoint.max_header_bytes:
            raise HeadersTooLarge("request head too large")
        parser = self.parser
        ex.method_raw = method = parser.get_method()
        ex.method = method.decode("latin-1")
        version = self._request_version(ex, method)
        if version not in ("1.1", "1.0"):
            if version[:1] in ("2", "3"):
                raise VersionNotSupported(f"HTTP/{version} on an HTTP/1 entry point")
            raise BadRequest(f"unsupported HTTP version {version}")
        ex.version = version
        if version == "1.0":
            ex.keep_alive = parser.should_keep_alive()
            if ex.chunked:
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        elif ex.host_header is None:
            # RFC 9112 3.2: every HTTP/1.1 request carries Host, absolute-form too.
            raise BadRequest("missing Host header")
        if ex.chunked and ex.content_length is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if ex.connection_tokens is not None:
            listed = ex.connection_tokens
            ex.fields = [f for f in ex.fields if f[0] not in listed]
            if ex.xforwarded is not None:
                ex.xforwarded -= listed
        if self.trusted and ex.xforwarded is None:
            ex.xforwarded = set()
        if ex.upgrade is not None and not parser.should_upgrade():
            ex.upgrade = None
        ex.finish_head()
        ex.head_done = True
        self.head_bytes = 0
        self.head_size = 0
        if ex.chunked:
            self._scan_chunks()
        if self.active is None:
            self.active = ex
            self._dispatch(ex)
        else:
            self.queue.append(ex)
            self.pause_reading_for(self.PAUSE_PIPELINE)

    def _request_version(self, ex: Exchange, method: bytes) -> str:
        """The request's HTTP version, read from its request line when the read
        holds it (httptools' get_http_version formats a string: 2,000 instructions).

        When the message began at the read's start, its line is ``method SP
        target SP HTTP/1.x CRLF``; where the read held more (empty lines first,
        runs of spaces), the ten bytes looked at are not a version and a CRLF,
        and httptools is asked.
        """
        if self.message_start == 0:
            at = len(method) + len(ex.target) + 2
            tail = self.read_data[at : at + 10]
            if tail == b"HTTP/1.1\r\n":
                return "1.1"
            if tail == b"HTTP/1.0\r\n":
                return "1.0"
        return self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        receiving = self.receiving
        if receiving is not None and receiving.response_state != 2:
            receiving.body(body)

    def _scan_chunks(self) -> None:
        """Start checking the chunk lines of this request's body, from where it starts."""
        data = self.read_data
        if self.message_start == 0:
            end = data.find(b"\r\n\r\n")
            start = end + 4 if end >= 0 else -1
        elif self.message_start == -1:
            carry = self.head_carry
            end = (carry + data).find(b"\r\n\r\n")
            start = end + 4 - len(carry) if end >= 0 else -1
        else:
            # Pipelined behind another request in the same read: where this body
            # starts is not known, and its chunk lines go unchecked (llhttp still
            # checks the framing itself).
            start = -1
        if start < 0:
            self.chunk_scanner = None
            return
        scanner = self.chunk_scanner = ChunkScanner()
        scanner.feed(data, start)

    def on_message_complete(self) -> None:
        ex = self.receiving
        if ex is None:
            return
        self.receiving = None
        self.chunk_scanner = None
        self.message_start = -2  # a next message in this read starts at an unknown offset
        if not ex.keep_alive:
            # Nothing after a request that closes the connection is ever forwarded.
            self.discarding = True
        if ex.response_state == 2:
            # Answered as soon as its head was read (404, internal service).
            if self.active is None and not self.queue:
                self._set_deadline(D_IDLE, self.entrypoint.idle_timeout)
            return
        ex.body_done()
        if self.batch:
            # This request is complete: a malformed one after it in the same read
            # must not take its bytes down with it.
            self._send_batch()
        route = ex.route
        if (
            ex is self.active
            and route is not None
            and route.internal is not None
            and ex.service_called
            and ex.response_state == 0
        ):
            route.internal(ex)

    # -- exchanges ------------------------------------------------------------

    def _dispatch(self, ex: Exchange) -> None:
        # Snapshot.route, inlined: it is interpreted, and this runs for every request.
        table = ex.snapshot.tables.get(self.entrypoint.name)
        route: RouteTarget | None = None if table is None else table.match(ex)
        if route is None:
            self.exchange_failed(ex, _NOT_FOUND)
            return
        ex.route = route
        if route.chain is not None:
            run_request(ex)
            return
        ex.service_called = True
        if route.internal is not None:
            # Internal services answer once the request body has been read.
            if ex.request_done:
                route.internal(ex)
            return
        service = route.service
        assert service is not None  # a route has a service, an internal one, or a chain
        service.serve(ex)

    def exchange_failed(self, ex: Exchange, error: HttpError) -> None:
        if ex.service_called and service_failed(ex, error):
            return  # answered through the router's middlewares
        if ex.response_state != 0:
            self.abort()
            return
        ex.response_state = 2
        ex.status = error.status
        close = error.close or not ex.keep_alive or not _fully_read(ex) or self.closing
        if error.status >= 500:
            log.debug("%s %s -> %d: %s", ex.method, ex.target[:200], error.status, error)
        self.write(error_response(error.status, close))
        self.exchange_done(ex, close=close)

    def respond(self, ex: Exchange, response: bytes, close: bool) -> None:
        """Answer an exchange with complete response bytes (internal services)."""
        ex.response_state = 2
        self.write(response)
        self.exchange_done(ex, close=close)

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        self.flush()
        observe = self.entrypoint.observe
        if observe is not None:
            observe(ex)  # metrics and the access log: counters and a buffer, no I/O
        route = ex.route
        if route is not None and route.chain is not None:
            if route.chain.finishers:
                finish_chain(ex, ex.status)
            else:
                ex.finished = True  # what finish_chain does when no handler has on_done
        if ex is not self.active:
            return
        self.active = None
        if close or self.closing or not _fully_read(ex):
            self._close()
            return
        if self.queue:
            following = self.queue.popleft()
            if not self.queue:
                self.resume_reading_for(self.PAUSE_PIPELINE)
            if isinstance(following, HttpError):
                self._answer_and_close(following)
                return
            self.active = following
            self._dispatch(following)
            return
        if self.receiving is None:
            self._set_deadline(D_IDLE, self.entrypoint.idle_timeout)
        else:
            self._set_deadline(D_READ, self.entrypoint.read_timeout)

    def _stop_reading(self) -> None:
        """After a bad request or a failure: drop what this read would have sent
        upstream, and read (and parse) nothing more."""
        self.batch = []
        self.batch_size = 0
        self.batch_target = None
        self.discarding = True
        self.pause_reading_for(self.PAUSE_PIPELINE)

    def _request_error(self, error: HttpError) -> None:
        """A request could not be parsed: answer in turn, then close; read nothing more."""
        self._stop_reading()
        receiving = self.receiving
        self.receiving = None
        if self.active is None or self.active is receiving:
            active = self.active
            if active is not None and active.response_state != 0:
                self.abort()
                return
            if active is not None:
                active.drop_upstream()
            self.active = None
            self._answer_and_close(error)
        else:
            self.queue.append(error)

    def _unexpected_error(self, cause: Exception) -> None:
        """An exception no code path expected, raised while a request was served (a
        bug: in Turnout, an internal service or a plugin). It is logged with its
        traceback, and the exchange in hand is answered 500 and the connection
        closed (cut, if its answer had begun), rather than left waiting for an
        answer that would never come. The parser wraps it, so it would otherwise
        pass for a malformed request."""
        log.error(
            "unexpected error while serving a request on entry point %s",
            self.entrypoint.name,
            exc_info=cause,
        )
        self._stop_reading()
        self.queue.clear()  # pipelined requests behind it are not answered
        receiving = self.receiving
        self.receiving = None
        ex = self.active if self.active is not None else receiving
        if ex is None:
            self._answer_and_close(_INTERNAL_ERROR)
            return
        self.active = ex
        ex.drop_upstream()
        if ex.response_state != 0:
            self.abort()
            return
        ex.response_state = 2
        ex.status = 500
        self.write(error_response(500, True))
        try:
            self.exchange_done(ex, close=True)  # counted, its middlewares' on_done run
        except Exception:
            log.exception("finishing the failed request failed too")
            self.abort()

    def _answer_and_close(self, error: HttpError) -> None:
        self.write(error_response(error.status, True))
        self._close()

    def _close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in flight."""
        self.closing = True
        if self.active is None and self.receiving is None and self.tunnel is None:
            self._close()

    # -- upgrades (WebSocket and friends) --------------------------------------

    def _upgrade_requested(self, rest: bytes) -> None:
        self.pause_reading_for(self.PAUSE_UPGRADE)
        if rest:
            self.tunnel_buffer.append(rest)

    def start_tunnel(
        self, ex: Exchange, upstream: UpstreamConnection, head: bytes, rest: bytes
    ) -> None:
        self.tunnel = upstream
        self.active = None
        self.deadline_kind = D_NONE
        ex.status = 101
        observe = self.entrypoint.observe
        if observe is not None:
            observe(ex)
        if ex.route is not None and ex.route.chain is not None:
            finish_chain(ex, 101)
        self.write(head)
        if rest:
            self.write(rest)
        self.flush()
        if self.tunnel_buffer and upstream.transport is not None:
            upstream.transport.writelines(self.tunnel_buffer)
        self.tunnel_buffer = []
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    def tunnel_closed(self) -> None:
        self.tunnel = None
        self._close()


def _parser_error(exc: Exception) -> HttpError:
    message = str(exc)
    if "Invalid method" in message or isinstance(exc, httptools.HttpParserInvalidMethodError):
        return BadRequest(message)
    if "Transfer-Encoding" in message and "unknown" in message.lower():
        return NotImplementedCoding(message)
    return BadRequest(message)


def _fully_read(ex: Exchange) -> bool:
    """Whether nothing of this request is left to read: its body is in, or it has none.

    A request without a body can be answered before httptools reports it complete
    (that comes right after its head) and the connection still be reused.
    """
    if ex.request_done:
        return True
    return ex.head_done and ex.upgrade is None and not ex.chunked and not ex.content_length


_NOT_FOUND: Final = HttpError("no router matched", status=404)
_NOT_FOUND.close = False
_INTERNAL_ERROR: Final = HttpError("unexpected error", status=500)
