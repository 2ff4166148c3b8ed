"""The failover service: a main service, and a fallback while the main one is down.

As in Traefik v3: the main service must report its health (a load balancer
with ``healthCheck``, or a weighted, failover or mirroring service with
``healthCheck``); requests go to it while it has an available server and to
``fallback`` otherwise, and back as soon as it recovers. The fallback's own
health is followed only when the failover service has ``healthCheck`` (then
both down answer 503, and a parent sees the failover as down).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.services.base import Composite

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.services.base import HttpService
    from proxy.services.loadbalancer import LoadBalancer


class Failover(Composite):
    __slots__ = ("fallback", "health", "key", "main", "name")

    def __init__(
        self, name: str, main: HttpService, fallback: HttpService, health: bool, key: bytes
    ) -> None:
        self.name = name
        self.main = main
        self.fallback = fallback
        self.health = health
        self.key = key

    @property
    def available(self) -> bool:
        return self.main.available or self.fallback.available

    def choose(self) -> HttpService | None:
        if self.main.available:
            return self.main
        if not self.health or self.fallback.available:
            return self.fallback
        return None

    def balancers(self) -> Iterator[LoadBalancer]:
        yield from self.main.balancers()
        yield from self.fallback.balancers()
