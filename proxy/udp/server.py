"""A UDP entry point (``address = ":5353/udp"``): its socket, its sessions, its counters.

Every datagram from a client address that has no session opens one
(proxy/udp/sessions.py) through the entry point's UDP router; datagrams go
through it unchanged, one for one. The listening socket answers each client
from the address it sent to.

Size: a datagram larger than ``udp.maxDatagramBytes`` (Turnout; default
65,535, Traefik's buffer) is dropped whole, counted and logged at debug, in
both directions; nothing is ever cut short. The loop reads into a buffer larger
than any UDP payload (64 KiB with uvloop, 256 KiB with asyncio's own loop), so
the length it hands over is the datagram's true length and the comparison is
exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING

from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import parse_address
from proxy.udp.sessions import Address, Session

if TYPE_CHECKING:
    from proxy.http.resolver import Resolver
    from proxy.runtime.entrypoint import Clock
    from proxy.runtime.snapshot import Snapshot

log = logging.getLogger("turnout")

COUNTERS = (
    "datagrams_in",
    "oversize_dropped",
    "unrouted_dropped",
    "session_limit_dropped",
    "pending_dropped",
    "congestion_dropped",
    "open_failed",
    "upstream_errors",
    "sessions_opened",
)


class UdpListener(asyncio.DatagramProtocol):
    """The entry point's socket: datagrams from clients, to their sessions."""

    __slots__ = (
        "clock",
        "counters",
        "entrypoint",
        "max_datagram",
        "sessions",
        "sock",
        "tasks",
        "timeout",
        "transport",
        "writing_paused",
    )

    def __init__(self, entrypoint: UdpEntryPoint) -> None:
        self.entrypoint = entrypoint
        self.clock = entrypoint.clock
        self.timeout = entrypoint.timeout
        self.max_datagram = entrypoint.max_datagram
        self.sessions: dict[Address, Session] = {}
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.tasks: set[asyncio.Task[None]] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.counters["datagrams_in"] += 1
        if len(data) > self.max_datagram:
            self.oversize(len(data), f"client {addr[0]}:{addr[1]}")
            return
        session = self.sessions.get(addr)
        if session is None:
            session = self._open(addr)
            if session is None:
                return
        session.send(data)

    def pause_writing(self) -> None:
        # The socket's send buffer is full (the transport queues what it cannot
        # send): drop answers, as a router would, rather than queue them without end.
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False

    def error_received(self, exc: Exception) -> None:
        # On an unconnected socket Linux reports nothing per peer; keep serving.
        log.debug("entryPoint %s: %s", self.entrypoint.name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _open(self, client: Address) -> Session | None:
        entrypoint = self.entrypoint
        if entrypoint.closing:
            return None
        limit = entrypoint.max_sessions
        if limit and len(self.sessions) >= limit:
            # Every session holds a socket: a flood of new source addresses must
            # not exhaust descriptors. Existing sessions keep working.
            self.counters["session_limit_dropped"] += 1
            log.debug(
                "entryPoint %s: datagram from %s dropped: %d sessions open "
                "(transport.maxConnections)",
                entrypoint.name,
                client,
                limit,
            )
            return None
        route = entrypoint.snapshot.udp.routes.get(entrypoint.name)
        server = None if route is None else route.service.next_server()
        if server is None:
            self.counters["unrouted_dropped"] += 1
            log.debug(
                "entryPoint %s: datagram from %s dropped: %s",
                entrypoint.name,
                client,
                "no UDP router" if route is None else f"service {route.service.name} has no server",
            )
            return None
        session = Session(self, client, server)
        self.sessions[client] = session
        self.counters["sessions_opened"] += 1
        task = asyncio.get_running_loop().create_task(session.open())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return session

    def send(self, data: bytes, client: Address) -> None:
        transport = self.transport
        if transport is not None:
            if self.writing_paused:
                self.counters["congestion_dropped"] += 1
            elif data:
                transport.sendto(data, client)
            elif self.sock is not None:
                # asyncio transports skip sendto(b""); the socket sends it.
                with contextlib.suppress(OSError):
                    self.sock.sendto(b"", client)

    def oversize(self, size: int, origin: str) -> None:
        self.counters["oversize_dropped"] += 1
        log.debug(
            "entryPoint %s: dropped a %d-byte datagram from %s (udp.maxDatagramBytes is %d)",
            self.entrypoint.name,
            size,
            origin,
            self.max_datagram,
        )


class DatagramServer:
    """What the instance reads of a listening server (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.sockets = [sock] if sock is not None else []

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        return None


class UdpEntryPoint:
    """A ``/udp`` entry point: what the instance starts, sweeps, swaps and stops."""

    def __init__(
        self, name: str, config: EntryPointConfig, clock: Clock, snapshot: Snapshot
    ) -> None:
        self.name = name
        self.config = config
        self.host, self.port, self.proto = parse_address(config.address)
        self.clock = clock
        self.snapshot = snapshot
        self.timeout = float(config.udp.timeout)
        self.max_datagram = config.udp.max_datagram_bytes
        # Turnout's transport.maxConnections bounds sessions as it bounds TCP connections.
        self.max_sessions = config.transport.max_connections
        life_cycle = config.transport.life_cycle
        self.grace_timeout = float(life_cycle.grace_time_out)
        self.accept_grace_timeout = float(life_cycle.request_accept_grace_timeout)
        self.closing = False
        # Set by the instance: host names of servers resolve through its cache.
        self.resolver: Resolver | None = None
        self.listener = UdpListener(self)
        self.server: DatagramServer | None = None

    @property
    def connections(self) -> list[Session]:
        """The open sessions: counted, swept and closed like connections."""
        return list(self.listener.sessions.values())

    def counters(self) -> dict[str, int]:
        return {"sessions": len(self.listener.sessions), **self.listener.counters}

    async def start(self, loop: asyncio.AbstractEventLoop, *, reuse_port: bool = False) -> None:
        sock = _bind(self.host, self.port, reuse_port or self.config.reuse_port)
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: self.listener, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.listener.sock = sock
        self.server = DatagramServer(transport)

    @property
    def bound_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()

    def sweep(self, now: float) -> None:
        for session in list(self.listener.sessions.values()):
            session.check_deadline(now)


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The entry point's socket, bound. ``":5353/udp"`` (no host) listens on every
    interface, IPv6 and IPv4 on one socket where the kernel has IPv6."""
    if host:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        candidates = [(family, address) for family, _, _, _, address in infos]
    else:
        candidates = [(socket.AF_INET, ("0.0.0.0", port))]
        if socket.has_ipv6:
            candidates.insert(0, (socket.AF_INET6, ("::", port)))
    error: OSError | None = None
    for family, address in candidates:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6 and not host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error
