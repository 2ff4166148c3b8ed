"""Backend side: one Protocol per upstream connection and a keep-alive pool per server.

Theory of operation
-------------------
A ``ServerPool`` owns the idle connections to one backend address. A request
takes an idle connection (last in, first out: the warmest socket, and the
oldest ones age out) or dials a new one. While an exchange owns a connection,
``UpstreamConnection`` parses the response with httptools and writes it to the
client transport itself: the response bytes go from one socket to the other
without passing through any intermediate object.

A connection goes back to the pool only when both the request and the response
were complete and both sides allow keep-alive. A pooled connection that the
backend closes is dropped from the pool in ``connection_lost``; one that
receives bytes while idle is broken and closed. A request that was written to
a reused connection which then died before any response byte arrived is retried
once on a fresh connection when it has no body (Go's transport does the same),
so a backend's keep-alive timeout racing a request never shows up as a 502.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from typing import TYPE_CHECKING, Final

import httptools

from proxy.http.errors import BadGateway, HttpError
from proxy.http.exchange import FRAME_LENGTH
from proxy.http.flow import JOIN_LIMIT, WRITE_HIGH, WRITE_LOW
from proxy.http.headers import CRLF, HOP_BY_HOP, STATUS_LINES, has_ctl

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.resolver import Resolver

log = logging.getLogger("turnout.upstream")


_NO_BODY_STATUS: Final = frozenset({204, 304})
_FRAMING_AND_HOP: Final = HOP_BY_HOP | {b"content-length"}
_CONNECTION_OPTIONS: Final = frozenset({b"", b"close", b"keep-alive", b"upgrade"})
# First bytes of the header names that may need more than forwarding as they
# are (framing, hop-by-hop): c, k, p, t, u in either case. Other lines go on
# without a look at their name.
_LOOK_CLOSER: Final = bytes(1 if chr(i) in "ckptuCKPTU" else 0 for i in range(256))
# Status lines as most backends write them: no need to look for control bytes.
_PLAIN_STATUS_LINES: Final = frozenset(STATUS_LINES.values())
# 1xx responses allowed before an answer; one more is a 502 (Go's transport: 5).
MAX_INTERIM: Final = 5
# A response head larger than this is refused (502). nginx allows 4-8 KiB
# (proxy_buffer_size) and HAProxy 16 KiB (tune.bufsize); Go's transport 10 MiB.
MAX_RESPONSE_HEAD: Final = 64 * 1024


class ServerPool:
    """Keep-alive connections to one backend server (scheme, host, port)."""

    __slots__ = (
        "address",
        "connections",
        "dial_timeout",
        "host",
        "idle",
        "idle_timeout",
        "loop",
        "max_idle",
        "port",
        "resolver",
        "server_hostname",
        "ssl",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        resolver: Resolver,
        host: str,
        port: int,
        *,
        max_idle: int = 200,
        idle_timeout: float = 90.0,
        dial_timeout: float = 30.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.loop = loop
        self.resolver = resolver
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.dial_timeout = dial_timeout
        self.ssl = ssl
        self.server_hostname = host if ssl is not None else None
        self.idle: list[UpstreamConnection] = []
        self.connections: set[UpstreamConnection] = set()

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None:
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float) -> None:
        if conn.transport is None:
            return
        if conn.feeding:
            # Finished inside its own read: pooled once that read is parsed, so
            # that a request dispatched meanwhile (a pipelined one) cannot take
            # it, and any bytes after the response show the backend out of step.
            conn.release_pending = True
            return
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        conn.reused = True
        self.idle.append(conn)

    async def dial(self) -> UpstreamConnection:
        addresses = await self.resolver.candidates(self.host)
        conn = UpstreamConnection(self)
        timeout = self.dial_timeout if self.dial_timeout > 0 else None
        async with asyncio.timeout(timeout):
            for index, address in enumerate(addresses):
                try:
                    await self.loop.create_connection(
                        lambda: conn,
                        address,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.server_hostname,
                    )
                    break
                except OSError:
                    # The next address of the name, as Go's dialer does; the
                    # last one's error is the one reported.
                    if index == len(addresses) - 1:
                        raise
        return conn

    def forget(self, conn: UpstreamConnection) -> None:
        self.connections.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def sweep(self, now: float) -> None:
        """Close idle connections older than idle_timeout."""
        if not self.idle or self.idle_timeout <= 0:
            return
        limit = now - self.idle_timeout
        stale = [conn for conn in self.idle if conn.idle_since <= limit]
        for conn in stale:
            conn.close()

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        self.idle.clear()


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "chunked",
        "close_after",
        "connection_tokens",
        "exchange",
        "feeding",
        "has_length",
        "head_buffer",
        "head_from",
        "head_parts",
        "head_rest",
        "head_wanted",
        "idle_since",
        "interim_count",
        "parser",
        "pool",
        "release_pending",
        "reset_parser",
        "response_started",
        "reused",
        "status",
        "transport",
        "upgrade_parts",
        "upgraded",
    )

    def __init__(self, pool: ServerPool) -> None:
        # Per-connection state
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.idle_since = 0.0
        self.upgraded = False
        self.reset_parser = False
        self.feeding = False  # inside parser.feed_data
        self.release_pending = False  # released while feeding: pool it after
        # Per-exchange state
        self.exchange: Exchange | None = None
        self.response_started = False
        self.status = 0
        self.head_parts: list[bytes] = []
        self.upgrade_parts: list[bytes] = []
        self.connection_tokens: list[bytes] = []
        self.has_length = False
        self.chunked = False
        self.close_after = False
        # The response head as read (see _read_head): True until the final
        # head is in; the bytes it is read from, and where it starts in them;
        # and the start of a head that an earlier read began.
        self.head_wanted = False
        self.interim_count = 0  # 1xx responses before this exchange's answer
        self.head_buffer = b""
        self.head_from = 0
        self.head_rest = b""

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)  # type: ignore[attr-defined]
        self.pool.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.forget(self)
        # The parser's bound methods make a cycle with this connection (see
        # HttpConnection.connection_lost); nothing parses after this.
        self.parser = None  # type: ignore[assignment]
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if self.upgraded:
            exchange.conn.tunnel_closed()
        elif (self.status or self.head_rest) and not self.response_started:
            # Not retried once the backend began to answer (Go's transport neither).
            exchange.upstream_failed(BadGateway("backend closed during response head"), self)
        elif self.response_started:
            if exchange.response_close_delimited:
                # A body delimited by the backend closing ends here: it is complete.
                exchange.response_finished(self, reusable=False)
            else:
                exchange.response_aborted()
        elif self.reused and exchange.replayable():
            exchange.retry_fresh(self.pool)
        else:
            exchange.upstream_failed(BadGateway("backend closed the connection"), self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # Bytes on an idle connection: the backend is out of step; never reuse it.
            self.close()
            return
        client = exchange.conn
        if self.upgraded:
            client.transport_write(data)
            return
        wanted = self.head_wanted
        if wanted:
            rest = self.head_rest
            self.head_buffer = rest + data if rest else data
            self.head_from = 0
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._start_tunnel(exchange, data[offset:])
        except httptools.HttpParserError as exc:
            self._fail(BadGateway(f"invalid response from backend: {exc}"))
        except HttpError as exc:
            self._fail(exc)
        self.feeding = False
        if self.release_pending:
            self.release_pending = False
            self.pool.release(self, client.clock.now)
        if wanted:
            rest = b""
            if self.head_wanted:
                # Kept for the next read while the head is incomplete, up to a bound.
                rest = self.head_buffer[self.head_from :]
                if len(rest) > MAX_RESPONSE_HEAD:
                    rest = b""
                    self._fail(BadGateway("response head from backend too large"))
            self.head_rest = rest
            self.head_buffer = b""
        # Whatever this read produced for the client leaves now, in one write.
        client.flush()
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)

    def pause_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.conn.pause_reading_for(exchange.conn.PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.conn.resume_reading_for(exchange.conn.PAUSE_UPSTREAM)

    # -- driving an exchange ----------------------------------------------

    def start(self, exchange: Exchange, parts: list[bytes]) -> None:
        """Take an exchange and send its head (and any body received so far)."""
        self.exchange = exchange
        self.response_started = False
        self.status = 0
        self.close_after = False
        self.head_wanted = True  # head_parts and the rest are set by _read_head
        self.interim_count = 0
        self.head_rest = b""
        exchange.upstream = self
        client = exchange.conn
        if client.feeding:
            # Inside the client's read: sent with the rest of that read, or
            # dropped if a later byte of it turns out to be malformed.
            client.batch_upstream(self, parts)
            return
        transport = self.transport
        assert transport is not None
        if len(parts) == 1:
            transport.write(parts[0])
        else:
            transport.write(b"".join(parts))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.pool.forget(self)

    def _fail(self, error: HttpError) -> None:
        exchange = self.exchange
        if exchange is None:
            # The response was complete; what followed it in the same read is
            # garbage (a body after a 204, say). Only this connection is lost.
            self.close()
            return
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.pool.forget(self)
        if self.response_started:
            exchange.response_aborted()
        else:
            exchange.upstream_failed(error, self)

    # -- httptools callbacks ----------------------------------------------
    #
    # There is no on_header (nor on_status, nor on_message_begin): httptools
    # then makes no call per header line. The head's lines are read from the
    # bytes themselves once llhttp has accepted the whole head (_read_head),
    # which costs a fifth of the per-line callbacks (PERFORMANCE.md).

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        self._read_head()
        parser = self.parser
        status = parser.get_status_code()
        self.status = status
        if status < 100 or status > 599:
            raise BadGateway(f"invalid status {status} from backend")
        if not parser.should_keep_alive():
            self.close_after = True
        if self.connection_tokens:
            # Headers the backend named in Connection are hop-by-hop (RFC 9110 7.6.1).
            listed = set(self.connection_tokens)
            self.head_parts = [
                line for line in self.head_parts if line.split(b":", 1)[0].lower() not in listed
            ]
        if status < 200:
            if status == 101:
                self.head_wanted = False
                return  # finished in data_received when httptools signals the upgrade
            self.interim_count += 1
            if self.interim_count > MAX_INTERIM:
                raise BadGateway("too many 1xx responses from backend")
            exchange.interim_response(
                status, STATUS_LINES[status] + b"".join(self.head_parts) + CRLF
            )
            return
        self.head_wanted = False
        self.response_started = True
        exchange.response_head(self, status, self.head_parts)
        if exchange.is_head or status in _NO_BODY_STATUS:
            # httptools waits for a HEAD response's Content-Length body forever
            # (httptools issue 47): the response ends with its head.
            if exchange.is_head:
                self.reset_parser = True
            self._finish(exchange)

    def _read_head(self) -> None:
        """Take the head llhttp has just accepted from the bytes read.

        llhttp, strict as httptools runs it, has checked the head's grammar:
        CRLF line ends, no folded lines, a token and a colon starting each
        header line, no CR, LF or NUL in a value. So each CRLF ends a line, and
        lines are forwarded as the backend wrote them.
        """
        buf = self.head_buffer
        start = self.head_from
        # bytes.find with a start offset parses its arguments the slow way:
        # without one in the usual case of a head at the start of a read.
        end = buf.find(b"\r\n\r\n", start) if start else buf.find(b"\r\n\r\n")
        if end < 0:
            # llhttp saw a head end that the bytes kept do not hold: never expected.
            raise BadGateway("response head out of step with the parser")
        if end - start > MAX_RESPONSE_HEAD:
            raise BadGateway("response head from backend too large")
        self.head_from = end + 4
        self.upgrade_parts = []
        self.connection_tokens = []
        self.has_length = False
        self.chunked = False
        kept: list[bytes] = []
        self.head_parts = kept
        lines = buf[start : end + 2].splitlines(True)
        status_line = lines[0]
        # The reason phrase is not forwarded (Turnout writes its own status line),
        # but a backend that puts control bytes there is not to be trusted.
        if status_line not in _PLAIN_STATUS_LINES and has_ctl(status_line[:-2]):
            raise BadGateway("control byte in the backend's status line")
        for index in range(1, len(lines)):
            line = lines[index]
            if (
                not _LOOK_CLOSER[line[0]]
                or line.startswith(b"Content-Type:")
                or line.startswith(b"Cache-Control:")
            ):
                kept.append(line)
            elif line.startswith(b"Content-Length:"):
                # Kept in place: llhttp has checked it, and Turnout keeps that framing.
                self.has_length = True
                kept.append(line)
            elif line == b"Connection: keep-alive\r\n" or line == b"Connection: close\r\n":
                self.upgrade_parts.append(line)
            elif line == b"Transfer-Encoding: chunked\r\n":
                self.chunked = True  # Turnout writes its own framing
            else:
                self._header_line(line, kept)

    def _header_line(self, line: bytes, kept: list[bytes]) -> None:
        """A header line whose name needs a look: framing, hop-by-hop, or neither."""
        # partition takes its one argument directly; find builds and parses
        # a tuple of them (PERFORMANCE.md: about 1,700 instructions a call).
        name, _, rest = line.partition(b":")
        lname = name.lower()
        if lname not in _FRAMING_AND_HOP:
            kept.append(line)
            return
        value = rest[:-2].strip(b" \t")
        if lname == b"content-length":
            self.has_length = True
            kept.append(line)
        elif lname == b"transfer-encoding":
            if value.lower() != b"chunked":
                # Re-chunking would drop a gzip or other transfer coding
                # the client would never know to undo.
                raise BadGateway(f"unsupported Transfer-Encoding {value[:40]!r} from backend")
            self.chunked = True
        elif lname == b"connection" or lname == b"upgrade":
            # Kept aside: forwarded only with a 101 Switching Protocols.
            self.upgrade_parts.append(line)
            if lname == b"connection":
                for token in value.lower().split(b","):
                    token = token.strip()
                    if token not in _CONNECTION_OPTIONS:
                        self.connection_tokens.append(token)
        # Any other hop-by-hop line is dropped.

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # Body bytes after a HEAD response: the backend does not know the
            # framing it promised; the connection cannot be trusted again.
            self.close_after = True
            return
        if exchange.framing == FRAME_LENGTH and exchange.held_head is None:
            # The common case inlined: body bytes go on as they are.
            conn = exchange.conn
            size = len(body)
            exchange.response_bytes += size
            conn.out.append(body)
            conn.out_size += size
            if conn.out_size > JOIN_LIMIT:
                conn.flush()
        else:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            if self.status != 101:  # a 101 goes on as a tunnel after this
                self.status = 0
            return
        exchange = self.exchange
        if exchange is not None:
            self._finish(exchange)

    def _finish(self, exchange: Exchange) -> None:
        self.exchange = None
        exchange.response_finished(self, reusable=not self.close_after)

    def _start_tunnel(self, exchange: Exchange, rest: bytes) -> None:
        if self.status != 101:
            self._fail(BadGateway("backend upgraded without 101"))
            return
        self.upgraded = True
        self.response_started = True
        self.pool.forget(self)
        head = STATUS_LINES[101] + b"".join(self.head_parts) + b"".join(self.upgrade_parts) + CRLF
        exchange.upgraded(self, head, rest)


def client_tls(
    root_cas: list[str] | tuple[str, ...], insecure_skip_verify: bool
) -> ssl_module.SSLContext:
    """TLS towards backends: a serversTransport's ``rootCAs`` and ``insecureSkipVerify``."""
    context = ssl_module.create_default_context()
    for ca in root_cas:
        context.load_verify_locations(cafile=ca)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    return context
