"""TCP services: where a routed connection goes, and how it is dialled.

A ``TcpBalancer`` rotates over its servers (Traefik's TCP servers carry no
weight: plain round-robin); a ``TcpWeighted`` service rotates over other TCP
services by weight (smooth WRR). Both answer ``pick()`` with a ``TcpServer``,
which carries everything the dial needs, compiled when the snapshot is built:
host and port, the transport (timeouts, keep-alive, TLS towards the backend)
and the PROXY protocol version to send.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from proxy.services.loadbalancer import LoadBalancer

__all__ = [
    "SmoothRotation",
    "TcpBalancer",
    "TcpServer",
    "TcpTransport",
    "TcpWeighted",
    "split_address",
]


@dataclass(frozen=True, slots=True)
class TcpTransport:
    dial_timeout: float  # 0: no limit
    keep_alive: float  # seconds between TCP keep-alive probes; 0 or less: off
    termination_delay: float  # after one side closed; negative: no limit
    proxy_protocol: int  # 0: none, else the PROXY protocol version (1 or 2)
    ssl: ssl.SSLContext | None  # for servers with tls = true
    server_name: str  # SNI towards TLS servers; "" means the server's host


class TcpServer:
    __slots__ = ("address", "host", "port", "tls", "transport", "weight")

    def __init__(
        self, address: str, host: str, port: int, tls: bool, transport: TcpTransport
    ) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.tls = tls
        self.transport = transport
        self.weight = 1


class SmoothRotation:
    """Smooth weighted round-robin over ``servers`` (anything with an int ``weight``)."""

    __slots__ = ("_current", "_next", "_total", "_uniform", "servers")

    def __init__(self, members: list[Any]) -> None:
        # Weight 0 takes a member out of rotation, as in Traefik.
        self.servers = [member for member in members if member.weight > 0]
        self._current = [0] * len(self.servers)
        self._total = sum(member.weight for member in self.servers)
        self._uniform = len({member.weight for member in self.servers}) <= 1
        self._next = 0

    # The HTTP load balancer's smooth WRR, on the same fields: one algorithm, one place.
    pick = LoadBalancer.pick


class TcpBalancer(SmoothRotation):
    __slots__ = ("name",)

    def __init__(self, name: str, servers: list[TcpServer]) -> None:
        super().__init__(servers)
        self.name = name

    def pick_server(self) -> TcpServer | None:
        return self.pick()  # type: ignore[no-any-return]


class _Member:
    __slots__ = ("service", "weight")

    def __init__(self, service: TcpBalancer | TcpWeighted, weight: int) -> None:
        self.service = service
        self.weight = weight


class TcpWeighted(SmoothRotation):
    __slots__ = ("name",)

    def __init__(self, name: str, members: list[tuple[TcpBalancer | TcpWeighted, int]]) -> None:
        super().__init__([_Member(service, weight) for service, weight in members])
        self.name = name

    def pick_server(self) -> TcpServer | None:
        member = self.pick()
        return None if member is None else member.service.pick_server()


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (Go's net.SplitHostPort); raises ValueError."""
    text = address.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError("expected [host]:port")
        host, port_text = text[1:close], text[close + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("missing port in address")
        if ":" in host:
            raise ValueError("too many colons in address (IPv6 hosts go in brackets)")
    if not host:
        raise ValueError("no host")
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"invalid port {port_text!r}")
    return host, int(port_text)
