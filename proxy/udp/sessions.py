"""One UDP session: a client address and its own connected socket to one server.

The first datagram from a client address opens a session: a server is picked
from the router's service and a socket connected to it. Later datagrams from
that address go through the same socket, and what the server sends back on it
goes to that client only, one datagram for one datagram (boundaries are never
merged or split). A session that carries nothing either way for the entry
point's ``udp.timeout`` is closed by the sweeper, as Traefik's session timeout
does. No timer per datagram: each one stamps the session with uvloop's time of
the current loop iteration (cached, no system call), and the sweep compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.udp.server import UdpListener
    from proxy.udp.service import UdpServer

log = logging.getLogger("turnout")

Address = tuple[str, int]

# Datagrams held while the session's socket is being opened (a resolution or
# a bind): a client that fires more than this before the first answer loses
# the excess, counted, as a full socket buffer would drop it.
MAX_PENDING = 64


class Session(asyncio.DatagramProtocol):
    __slots__ = (
        "client",
        "last_active",
        "listener",
        "opening",
        "pending",
        "server",
        "sock",
        "transport",
        "writing_paused",
    )

    def __init__(self, listener: UdpListener, client: Address, server: UdpServer) -> None:
        self.listener = listener
        self.client = client
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        # The socket itself, kept for zero-length datagrams: asyncio transports
        # silently skip ``sendto(b"")``, and an empty datagram is a datagram.
        self.sock: socket.socket | None = None
        self.pending: list[bytes] = []
        self.opening = True
        self.writing_paused = False
        self.last_active = listener.clock.time()

    async def open(self) -> None:
        """Connect this session's own socket to its server (resolving a host name)."""
        loop = asyncio.get_running_loop()
        server = self.server
        sock = None
        try:
            ip = server.host
            if server.family is None:
                resolver = self.listener.entrypoint.resolver
                if resolver is not None:
                    ip = await resolver.resolve(server.host)
                else:
                    infos = await loop.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM)
                    ip = infos[0][4][0]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((ip, server.port))  # a UDP connect: no packet, no wait
            self.sock = sock
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except OSError as error:
            log.debug("UDP session %s -> %s: cannot open: %s", self.client, server.address, error)
            self.listener.counters["open_failed"] += 1
            if sock is not None and self.transport is None:
                sock.close()
            self.close()

    # -- asyncio.DatagramProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.opening = False
        if self.listener.sessions.get(self.client) is not self:
            transport.close()  # closed (shutdown, timeout) while it was opening
            return
        self.transport = transport  # type: ignore[assignment]
        pending = self.pending
        self.pending = []
        for data in pending:
            if data:
                self.transport.sendto(data)  # type: ignore[union-attr]
            else:
                self.send_empty()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        listener = self.listener
        if len(data) > listener.max_datagram:
            listener.oversize(len(data), f"server {self.server.address}")
            return
        self.last_active = listener.clock.time()
        listener.send(data, self.client)

    def pause_writing(self) -> None:
        self.writing_paused = True  # see UdpListener.pause_writing

    def resume_writing(self) -> None:
        self.writing_paused = False

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the server is not there. Closing
        # lets the client's next datagram open a session to the next server.
        log.debug("UDP session %s -> %s: %s", self.client, self.server.address, exc)
        self.listener.counters["upstream_errors"] += 1
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._forget()

    # -- the listener's side --------------------------------------------------------

    def send(self, data: bytes) -> None:
        """A datagram from the client, to the server."""
        self.last_active = self.listener.clock.time()
        transport = self.transport
        if transport is not None:
            if self.writing_paused:
                self.listener.counters["congestion_dropped"] += 1
            elif data:
                transport.sendto(data)
            else:
                self.send_empty()
        elif self.opening:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(data)
            else:
                self.listener.counters["pending_dropped"] += 1

    def send_empty(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # a full buffer drops it, as for any datagram
                sock.send(b"")

    def close(self) -> None:
        self._forget()
        self.pending = []
        transport = self.transport
        if transport is not None:
            self.transport = None
            transport.close()

    def _forget(self) -> None:
        sessions = self.listener.sessions
        if sessions.get(self.client) is self:
            del sessions[self.client]

    # -- what the entry point asks of every connection ----------------------------

    def check_deadline(self, now: float) -> None:
        if now - self.last_active >= self.listener.timeout:
            log.debug("UDP session %s -> %s: timed out", self.client, self.server.address)
            self.close()

    def shutdown(self) -> None:
        self.close()

    def abort(self) -> None:
        self.close()
