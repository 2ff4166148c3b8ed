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

from proxy.services.loadbalancer import SmoothRotation

__all__ = [
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


class TcpBalancer:
    """Plain round-robin over the servers (the HTTP balancer's SmoothRotation:
    one algorithm, one place; held, not inherited, as that class is compiled)."""

    __slots__ = ("name", "rotation")

    def __init__(self, name: str, servers: list[TcpServer]) -> None:
        self.name = name
        self.rotation = SmoothRotation(servers)

    def pick_server(self) -> TcpServer | None:
        return self.rotation.pick()  # type: ignore[no-any-return]


class _Member:
    __slots__ = ("service", "weight")

    def __init__(self, service: TcpBalancer | TcpWeighted, weight: int) -> None:
        self.service = service
        self.weight = weight


class TcpWeighted:
    __slots__ = ("name", "rotation")

    def __init__(self, name: str, members: list[tuple[TcpBalancer | TcpWeighted, int]]) -> None:
        self.name = name
        self.rotation = SmoothRotation([_Member(service, weight) for service, weight in members])

    def pick_server(self) -> TcpServer | None:
        member = self.rotation.pick()
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
