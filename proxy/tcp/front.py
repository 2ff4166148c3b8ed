"""The entry point front: the first Protocol of a connection on an entry point with TCP routers.

Theory of operation
-------------------
An entry point without TCP routers accepts straight into ``HttpConnection``.
With TCP routers, each connection starts here and is decided as Traefik v3's
TCP router decides (pkg/server/router/tcp/router.go, ServeTCP), Turnout having
no TLS termination (so no HTTPS routers):

1. Only non-TLS TCP routers on the entry point (no TLS passthrough router): the
   routers are matched at once, without a server name, so a server-speaks-first
   protocol (MySQL, SMTP) works through HostSNI(`*`). A match is relayed.
2. Otherwise the first bytes are peeked, without consuming them, for at most
   the entry point's ``readTimeout`` and ``sni.MAX_PEEK`` bytes:
   - not TLS: the non-TLS TCP routers are matched (no server name); no match
     hands the connection, with the bytes read so far, to ``HttpConnection``;
     so TCP routers come before HTTP routers, as Traefik documents;
   - TLS: the passthrough routers are matched on the ClientHello's SNI and ALPN;
     no match closes the connection (Traefik would terminate TLS for HTTPS routers).

A routed connection runs the router's TCP middlewares, picks a server, dials
it, and hands both sockets to a relay: ``SpliceRelay`` (kernel zero-copy) where
available, else ``ProtocolRelay``. The front object stays the connection's
record in ``entrypoint.connections`` for its whole life: the sweeper checks its
deadlines (ClientHello wait, idle timeout, terminationDelay after a half-close),
shutdown and the leak statistics see it.

Half-close: a FIN from one side is passed on and the other direction keeps
flowing (only the idle timeout bounds it); once both sides have sent their FIN
the sockets are closed after the service's ``terminationDelay``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from proxy.http.server import HttpConnection
from proxy.rules.tcp import ConnInfo
from proxy.tcp.dial import dial, proxy_header
from proxy.tcp.relay import ProtocolRelay
from proxy.tcp.sni import MAX_PEEK, Hello, peek_hello
from proxy.tcp.splice import SPLICE_AVAILABLE, SpliceRelay

if TYPE_CHECKING:
    from proxy.runtime.entrypoint import Clock, EntryPoint
    from proxy.tcp.middlewares import TcpMiddleware
    from proxy.tcp.routing import TcpEntry, TcpTarget
    from proxy.tcp.service import TcpServer

log = logging.getLogger("turnout.tcp")

# States
PEEK = 0  # reading the first bytes
DIAL = 1  # routed; the backend is being dialled
RELAY = 2  # bytes flow
CLOSED = 3  # closed, or handed to HttpConnection

_clock = time.perf_counter


class TcpFront(asyncio.Protocol):
    __slots__ = (
        "active",
        "admitted",
        "buffer",
        "client_eof",
        "client_ip",
        "clock",
        "close_at",
        "deadline",
        "detached",
        "dialing",
        "entry",
        "entrypoint",
        "peer",
        "relay",
        "server",
        "started",
        "state",
        "target",
        "transport",
    )

    def __init__(self, entrypoint: EntryPoint, entry: TcpEntry) -> None:
        self.entrypoint = entrypoint
        self.entry = entry  # the snapshot's TCP routes the connection started on
        self.started = _clock()  # the access log's StartUTC and Duration
        self.clock: Clock = entrypoint.clock
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.peer: tuple[str, int] | None = None
        self.state = PEEK
        self.buffer = bytearray()
        self.deadline = 0.0
        self.active = 0.0  # last time bytes moved (the sweeper's clock)
        self.close_at = 0.0  # both directions ended: close at this time (terminationDelay)
        self.client_eof = False
        self.detached = False  # the client socket belongs to a SpliceRelay now
        self.target: TcpTarget | None = None
        self.server: TcpServer | None = None
        self.admitted: list[TcpMiddleware] = []
        self.dialing: asyncio.Task[None] | None = None
        self.relay: SpliceRelay | ProtocolRelay | None = None

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accept(transport, transport.get_extra_info("peername"))

    def accept(self, transport: asyncio.BaseTransport, peer: tuple[str, int] | None) -> None:
        """Serve a connection from ``peer``: the socket's, or a PROXY header's (entry point
        ``proxyProtocol``); rules, middlewares and a PROXY header to the backend use it."""
        entrypoint = self.entrypoint
        limit = entrypoint.max_connections
        if limit and len(entrypoint.connections) >= limit:
            transport.abort()  # type: ignore[attr-defined]  # full: reset, as HttpConnection
            self.state = CLOSED
            return
        self.transport = transport  # type: ignore[assignment]
        self.peer = (peer[0].split("%", 1)[0], peer[1]) if peer else None
        self.client_ip = self.peer[0] if self.peer else ""
        entrypoint.connections.add(self)
        self.active = self.clock.now
        entry = self.entry
        if entry.early:
            target = entry.plain.match(ConnInfo("", (), self.client_ip))  # type: ignore[union-attr]
            if target is not None:
                self._route(target)  # type: ignore[arg-type]
                return
        timeout = entrypoint.read_timeout
        self.deadline = self.clock.time() + timeout if timeout > 0 else 0.0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.state != PEEK:
            return  # dialling: held, and sent ahead of everything else
        hello = peek_hello(self.buffer)
        if hello is None:
            if len(self.buffer) >= MAX_PEEK:
                self._close()
            return
        self._decide(hello)

    def eof_received(self) -> bool | None:
        self.client_eof = True
        if self.state == DIAL:
            return True  # the FIN is passed on once the relay runs
        return None  # peeking: nothing to decide on; close

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.detached:
            return  # the transport let go of its descriptor; the relay holds a duplicate
        self._finish()

    # -- routing -------------------------------------------------------------------

    def _decide(self, hello: Hello) -> None:
        entry = self.entry
        info = ConnInfo(hello.sni, hello.alpn, self.client_ip)
        if not hello.is_tls:
            target = entry.plain.match(info) if entry.plain is not None else None
            if target is not None:
                self._route(target)  # type: ignore[arg-type]
            else:
                self._to_http()
            return
        target = entry.tls.match(info) if entry.tls is not None else None
        if target is None:
            log.debug(
                "tcp %s: no TLS router for SNI %r ALPN %s; closing (no TLS termination)",
                self.entrypoint.name,
                hello.sni,
                list(hello.alpn),
            )
            self._close()
            return
        self._route(target)  # type: ignore[arg-type]

    def _to_http(self) -> None:
        """No TCP router wants these bytes: HTTP routers take them, as in Traefik."""
        transport = self.transport
        assert transport is not None
        self.state = CLOSED
        self.transport = None  # HttpConnection's from now on
        self.entrypoint.connections.discard(self)
        conn = HttpConnection(self.entrypoint)
        transport.set_protocol(conn)
        conn.accept(transport, self.peer)
        if conn.transport is not None and self.buffer:
            conn.data_received(bytes(self.buffer))
        if self.client_eof and conn.transport is not None:
            conn.eof_received()

    def _route(self, target: TcpTarget) -> None:
        self.target = target
        self.deadline = 0.0
        for middleware in target.middlewares:
            if not middleware.admit(self.client_ip):
                log.debug(
                    "tcp %s: router %s: middleware %s refused %s",
                    self.entrypoint.name,
                    target.router,
                    middleware.name,
                    self.client_ip,
                )
                self._close()
                return
            self.admitted.append(middleware)
        server = target.service.pick_server()
        if server is None:
            log.debug("tcp router %s: service has no server", target.router)
            self._close()
            return
        self.server = server
        self.state = DIAL
        assert self.transport is not None
        self.transport.pause_reading()
        self.dialing = asyncio.get_running_loop().create_task(self._connect(server))

    async def _connect(self, server: TcpServer) -> None:
        try:
            await self._relay_to(server)
        finally:
            self.dialing = None

    async def _relay_to(self, server: TcpServer) -> None:
        try:
            sock = await dial(self.entrypoint.resolver, server)
        except (OSError, TimeoutError) as error:
            log.debug("tcp router %s: cannot reach %s: %s", self._router(), server.address, error)
            self._close()
            return
        if self.state != DIAL or self.transport is None:
            sock.close()
            return
        head = bytes(self.buffer)
        self.buffer = bytearray()
        if server.transport.proxy_protocol:
            head = proxy_header(server.transport.proxy_protocol, self.peer, self.transport) + head
        try:
            if server.tls or not SPLICE_AVAILABLE:
                await self._start_protocol_relay(server, sock, head)
            else:
                self._start_splice_relay(sock, head)
        except (OSError, TimeoutError) as error:
            log.debug("tcp router %s: relay to %s: %s", self._router(), server.address, error)
            self._close()

    def _start_splice_relay(self, sock: socket.socket, head: bytes) -> None:
        transport = self.transport
        assert transport is not None
        raw = transport.get_extra_info("socket")
        if raw is None:  # the client went away while the backend was dialled
            sock.close()
            self._close()
            return
        try:
            client = socket.socket(fileno=os.dup(raw.fileno()))
        except OSError:
            sock.close()
            raise
        try:
            relay = SpliceRelay(asyncio.get_running_loop(), self, client, sock, head)
        except OSError:
            client.close()
            sock.close()
            raise
        self.relay = relay
        self.state = RELAY
        self.detached = True
        transport.close()  # the duplicate keeps the socket open; uvloop forgets its own fd
        log.debug("tcp router %s -> %s: splice relay", self._router(), self._server())
        relay.start()

    async def _start_protocol_relay(
        self, server: TcpServer, sock: socket.socket, head: bytes
    ) -> None:
        client = self.transport
        assert client is not None
        relay = ProtocolRelay(self)
        self.relay = relay
        self.buffer = bytearray(head)  # written by the backend side as soon as it connects
        # The client side first (its reading still paused): a backend that speaks
        # first may deliver bytes as soon as its transport exists.
        client.set_protocol(relay.client)
        relay.client.connection_made(client)
        transport = server.transport
        timeout = transport.dial_timeout if transport.dial_timeout > 0 else None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: relay.backend,
                    sock=sock,
                    ssl=transport.ssl if server.tls else None,
                    server_hostname=(transport.server_name or server.host) if server.tls else None,
                )
        except BaseException:
            sock.close()
            raise
        backend = relay.backend.transport
        if self.state != DIAL or backend is None:
            if backend is not None:
                backend.close()
            return
        self.state = RELAY
        if self.client_eof:
            relay.client.eof_received()
        else:
            client.resume_reading()
        log.debug("tcp router %s -> %s: protocol relay", self._router(), self._server())

    # -- relay callbacks -------------------------------------------------------------

    def half_closed(self) -> None:
        """One side sent its FIN (passed on): the other direction flows until it ends too."""

    def relay_finished(self) -> None:
        """Both sides sent their FIN: close after the transport's terminationDelay."""
        server = self.server
        delay = server.transport.termination_delay if server is not None else 0.0
        if delay > 0 and self.state == RELAY:
            self.close_at = self.clock.time() + delay  # the sweeper closes at this time
        else:
            self._close()

    def relay_failed(self, error: OSError | None) -> None:
        if error is not None:
            log.debug("tcp router %s: %s", self._router(), error)
        self._close(abort=True)

    # -- deadlines and shutdown --------------------------------------------------------

    def check_deadline(self, now: float) -> None:
        state = self.state
        if state == PEEK:
            if self.deadline and self.deadline <= now:
                log.debug(
                    "tcp %s: no ClientHello in time from %s", self.entrypoint.name, self.client_ip
                )
                self._close()
            return
        if state != RELAY:
            return
        if self.close_at:
            if now >= self.close_at:
                self._close()
            return
        idle = self.entrypoint.tcp_idle_timeout
        if idle > 0 and now - self.active >= idle:
            log.debug("tcp router %s: idle for %gs, closing", self._router(), idle)
            self._close()

    def shutdown(self) -> None:
        """Graceful stop: a connection not relaying yet is closed; relays run out their grace."""
        if self.state != RELAY:
            self._close()

    def abort(self) -> None:
        self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        if self.state == CLOSED and self.relay is None and self.transport is None:
            return
        self.state = CLOSED
        self._stop_dialing()
        relay = self.relay
        if relay is not None:
            self.relay = None
            if isinstance(relay, SpliceRelay):
                relay.close()
            else:
                relay.close(abort)
        transport = self.transport
        if transport is not None and not self.detached:
            if abort:
                transport.abort()
            else:
                transport.close()
        self._finish()

    def _finish(self) -> None:
        """Forget the connection: middlewares released, off the entry point's books."""
        if self.target is not None and self.started:
            observe = getattr(self.entrypoint, "observe_tcp", None)  # the access log line, once
            self.started, started = 0.0, self.started
            if observe is not None:
                observe(self, started)
        self.state = CLOSED
        self._stop_dialing()
        relay = self.relay
        if relay is not None:
            self.relay = None
            relay.close()
        admitted = self.admitted
        if admitted:
            self.admitted = []
            for middleware in admitted:
                middleware.release(self.client_ip)
        self.entrypoint.connections.discard(self)

    def _stop_dialing(self) -> None:
        dialing = self.dialing
        # Not from inside the dial task itself: it is about to return anyway.
        if dialing is not None and dialing is not asyncio.current_task():
            self.dialing = None
            dialing.cancel()

    def _router(self) -> str:
        return self.target.router if self.target is not None else "?"

    def _server(self) -> str:
        return self.server.address if self.server is not None else "?"
