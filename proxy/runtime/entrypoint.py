"""An entry point at run time: a listening socket, its settings, its live connections."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import parse_address
from proxy.http.server import HttpConnection
from proxy.observability.metrics import recorder
from proxy.tcp.front import TcpFront
from proxy.tcp.proxy_header import ProxyHeaderReader, TrustedPeers

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.resolver import Resolver
    from proxy.observability.accesslog import AccessLog
    from proxy.runtime.snapshot import Snapshot

# Client IPs an entry point remembers (EntryPoint.clients); cleared when full, so
# that connections from ever new addresses cannot make it grow.
CLIENTS_CACHED: Final = 10_000


class Connection(Protocol):
    """What an entry point keeps of each open connection (HttpConnection, TcpFront,
    ProxyHeaderReader): swept, shut down and aborted alike."""

    def check_deadline(self, now: float) -> None: ...

    def shutdown(self) -> None: ...

    def abort(self) -> None: ...


class Clock:
    """The loop's clock: ``time()`` for deadlines, ``now`` as last read by the sweeper.

    uvloop's ``loop.time()`` is the time cached for the current loop iteration,
    so reading it costs no system call; ``now`` serves where a quarter of a
    second does not matter (idle pooled connections).
    """

    __slots__ = ("now", "time")

    def __init__(self, time: Callable[[], float]) -> None:
        self.time = time
        self.now = time()


class EntryPoint:
    def __init__(
        self,
        name: str,
        config: EntryPointConfig,
        clock: Clock,
        snapshot: Snapshot,
        access_log: AccessLog | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.host, self.port, self.proto = parse_address(config.address)
        timeouts = config.transport.responding_timeouts
        self.read_timeout = float(timeouts.read_timeout)
        self.write_timeout = float(timeouts.write_timeout)
        self.idle_timeout = float(timeouts.idle_timeout)
        # A relayed TCP connection with no byte either way for this long is closed.
        self.tcp_idle_timeout = self.idle_timeout
        life_cycle = config.transport.life_cycle
        self.grace_timeout = float(life_cycle.grace_time_out)
        self.accept_grace_timeout = float(life_cycle.request_accept_grace_timeout)
        transport = config.transport
        self.max_header_bytes = config.max_header_bytes
        self.max_header_count = transport.max_header_count
        self.max_target = transport.max_request_target_bytes
        self.max_connections = transport.max_connections
        self.keep_alive_max_requests = transport.keep_alive_max_requests
        self.keep_alive_max_time = float(transport.keep_alive_max_time)
        forwarded = config.forwarded_headers
        self.insecure = forwarded.insecure
        self.trusted_networks = [
            ipaddress.ip_network(entry.strip(), strict=False) for entry in forwarded.trusted_ips
        ]
        self.forwarded_server = b"X-Forwarded-Server: " + socket.gethostname().encode() + b"\r\n"
        pp = config.proxy_protocol
        # None: no PROXY header stage at all (see start()).
        self.proxy_protocol = TrustedPeers(pp.insecure, pp.trusted_ips) if pp is not None else None
        self.clock = clock
        self.snapshot = snapshot
        self.connections: set[Connection] = set()
        # Called with every finished exchange (metrics, access log); None: nothing to do.
        # Traefik's entryPoints.N.observability.{metrics,accessLogs} (default true)
        # turn either off for this entry point.
        observability = config.observability
        # A routed TCP connection's line when it closes (proxy/tcp/front.py).
        self.observe_tcp = (
            access_log.tcp_recorder(name)
            if access_log is not None and observability.access_logs
            else None
        )
        self.observe = _observer(
            recorder(name) if observability.metrics else None,
            access_log.recorder(name)
            if access_log is not None and observability.access_logs
            else None,
        )
        self.resolver: Resolver | None = None  # for TCP backends; set by the instance
        self.closing = False
        # The running Instance, for internal services (api@internal, ping@internal).
        self.runtime: Any = None
        self.server: asyncio.Server | None = None
        # Per client IP: (IP as bytes, trusted, X-Forwarded-* block, the same for
        # WebSocket upgrades): what HttpConnection.accept would otherwise build
        # for every new connection. Cleared when it holds CLIENTS_CACHED addresses.
        self.clients: dict[str, tuple[bytes, bool, bytes, bytes]] = {}
        # Per Host header: (Host, routing host, X-Forwarded-Host and -Port lines),
        # see Exchange.finish_head.
        self.hosts: dict[bytes, tuple[bytes, str, bytes]] = {}

    def is_trusted(self, ip: str) -> bool:
        if self.insecure:
            return True
        if not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)

    def client(self, ip: str) -> tuple[bytes, bool, bytes, bytes]:
        """What a connection from ``ip`` needs: see ``clients``."""
        facts = self.clients.get(ip)
        if facts is None:
            ip_bytes = ip.encode("latin-1")
            constant = (
                b"X-Forwarded-For: "
                + ip_bytes
                + b"\r\nX-Real-Ip: "
                + ip_bytes
                + b"\r\n"
                + self.forwarded_server
            )
            facts = (
                ip_bytes,
                self.is_trusted(ip),
                constant + b"X-Forwarded-Proto: http\r\n",
                constant + b"X-Forwarded-Proto: ws\r\n",
            )
            if len(self.clients) >= CLIENTS_CACHED:
                self.clients.clear()
            self.clients[ip] = facts
        return facts

    async def start(self, loop: asyncio.AbstractEventLoop, *, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port`` lets several worker processes share the port."""
        host = self.host or None  # ":8000" listens on every interface, as in Traefik
        factory = self.protocol if self.proxy_protocol is None else self._proxy_header_reader
        self.server = await loop.create_server(
            factory,
            host,
            self.port,
            reuse_address=True,
            reuse_port=reuse_port or self.config.reuse_port,
            backlog=4096,
        )

    def protocol(self) -> HttpConnection | TcpFront:
        """The protocol that serves an accepted connection: HTTP straight away,
        unless the live snapshot has TCP routers on this entry point.

        It is started with ``connection_made(transport)`` or, after a PROXY
        header, with ``accept(transport, client_address)`` (proxy/tcp/proxy_header.py).
        """
        entry = self.snapshot.tcp.entries.get(self.name)
        if entry is None:
            return HttpConnection(self)
        return TcpFront(self, entry)

    def _proxy_header_reader(self) -> ProxyHeaderReader:
        return ProxyHeaderReader(self)

    @property
    def bound_port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()

    def sweep(self, now: float) -> None:
        for conn in list(self.connections):
            conn.check_deadline(now)


def _observer(
    metrics: Callable[[Exchange], None] | None, access_log: Callable[[Exchange], None] | None
) -> Callable[[Exchange], None] | None:
    """One call per finished exchange, whatever is on: the hot path checks one attribute."""
    if metrics is None or access_log is None:
        return metrics or access_log

    def both(ex: Exchange) -> None:
        metrics(ex)
        access_log(ex)

    return both
