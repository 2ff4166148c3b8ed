"""What every HTTP service offers the router and a parent service.

A router hands its request to ``serve``. A parent service (weighted,
failover, mirroring) also asks ``available``, whether a request sent there
could reach a server: a ``LoadBalancer`` has UP servers, a weighted service
has an available child, and so on (only asked where Traefik propagates
health, that is where the parent's configuration has ``healthCheck``). A
mirror asks ``pick_server`` where its copy of a request goes. ``balancers``
are the load balancers a request may end on (their timeouts apply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from proxy.http.errors import ServiceUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.http.exchange import Exchange
    from proxy.services.loadbalancer import LoadBalancer, Server


class HttpService(Protocol):
    name: str

    @property
    def available(self) -> bool: ...

    def serve(self, exchange: Exchange) -> None: ...

    def pick_server(self) -> tuple[LoadBalancer, Server] | None: ...

    def balancers(self) -> Iterator[LoadBalancer]: ...


class Composite:
    """A service that hands each request to one of its children (weighted, failover)."""

    __slots__ = ()

    def choose(self) -> HttpService | None:
        """The child for the next request; None when none can take it (503)."""
        raise NotImplementedError

    def serve(self, exchange: Exchange) -> None:
        child = self.choose()
        if child is None:
            exchange.conn.exchange_failed(exchange, ServiceUnavailable("no available server"))
            return
        child.serve(exchange)

    def pick_server(self) -> tuple[LoadBalancer, Server] | None:
        child = self.choose()
        return None if child is None else child.pick_server()
