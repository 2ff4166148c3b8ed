"""What a snapshot holds for TCP: per entry point, the compiled routes the front matches."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.rules.tcp import TcpRouterTable
from proxy.tcp.middlewares import TcpMiddleware
from proxy.tcp.service import TcpBalancer, TcpWeighted

__all__ = ["TcpEntry", "TcpTarget"]


@dataclass(frozen=True, slots=True, eq=False)
class TcpTarget:
    """What a matched TCP router leads to."""

    router: str
    service: TcpBalancer | TcpWeighted
    middlewares: tuple[TcpMiddleware, ...]


@dataclass(frozen=True, slots=True)
class TcpEntry:
    """One entry point's TCP routers: non-TLS ones, and TLS passthrough ones."""

    plain: TcpRouterTable | None
    tls: TcpRouterTable | None
    # Traefik routes at once, before any byte, when no TLS router could want the bytes.
    early: bool
