"""The weighted service: smooth weighted round-robin over other services (canary, A/B).

``weighted.services[].{name, weight}`` as in Traefik v3: a weight of 0 takes a
child out of rotation. With ``healthCheck: {}`` the service follows its
children's health: a child with no available server is skipped, and the
service itself is unavailable to its own parent when every child is. Without
it, every child keeps its turns whatever its state (a child without a server
answers 503 itself), as in Traefik.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http.errors import ServiceUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.http.exchange import Exchange
    from proxy.services.base import HttpService
    from proxy.services.loadbalancer import LoadBalancer, Server


class Weighted:
    __slots__ = ("_current", "children", "health", "key", "name", "weights")

    def __init__(
        self, name: str, children: list[tuple[HttpService, int]], health: bool, key: bytes
    ) -> None:
        self.name = name
        kept = [(child, weight) for child, weight in children if weight > 0]
        self.children = tuple(child for child, _ in kept)
        self.weights = tuple(weight for _, weight in kept)
        self.health = health
        self.key = key  # the configuration it was built from (reuse across snapshots)
        self._current = [0] * len(kept)

    @property
    def available(self) -> bool:
        return any(child.available for child in self.children) if self.health else True

    def pick(self) -> HttpService | None:
        # Smooth WRR over the children that can take the request now: with
        # health, the set changes as children go DOWN and come back.
        current = self._current
        health = self.health
        best = -1
        best_value = 0
        total = 0
        for index, child in enumerate(self.children):
            if health and not child.available:
                continue
            weight = self.weights[index]
            current[index] += weight
            total += weight
            if best < 0 or current[index] > best_value:
                best, best_value = index, current[index]
        if best < 0:
            return None
        current[best] -= total
        return self.children[best]

    def serve(self, exchange: Exchange) -> None:
        child = self.pick()
        if child is None:
            exchange.conn.exchange_failed(exchange, ServiceUnavailable("no available server"))
            return
        child.serve(exchange)

    def pick_server(self) -> tuple[LoadBalancer, Server] | None:
        child = self.pick()
        return None if child is None else child.pick_server()

    def balancers(self) -> Iterator[LoadBalancer]:
        for child in self.children:
            yield from child.balancers()
