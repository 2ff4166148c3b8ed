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

from proxy.services.base import Composite
from proxy.services.loadbalancer import HEALTH_EPOCH, SmoothRotation

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.services.base import HttpService
    from proxy.services.loadbalancer import LoadBalancer


class _Child:
    """A child service with its weight, as SmoothRotation takes its members."""

    __slots__ = ("service", "weight")

    def __init__(self, service: HttpService, weight: int) -> None:
        self.service = service
        self.weight = weight


class Weighted(Composite):
    __slots__ = ("_children", "_rotation", "_seen", "children", "health", "key", "name", "weights")

    def __init__(
        self, name: str, children: list[tuple[HttpService, int]], health: bool, key: bytes
    ) -> None:
        self.name = name
        kept = [(child, weight) for child, weight in children if weight > 0]
        self.children = tuple(child for child, _ in kept)
        self.weights = tuple(weight for _, weight in kept)
        self.health = health
        self.key = key  # the configuration it was built from (reuse across snapshots)
        self._children = [_Child(child, weight) for child, weight in kept]
        self._rotation = SmoothRotation(self._children)
        self._seen = HEALTH_EPOCH.value

    @property
    def available(self) -> bool:
        return any(child.available for child in self.children) if self.health else True

    def choose(self) -> HttpService | None:
        if self.health and self._seen != HEALTH_EPOCH.value:
            # A server somewhere changed state: rotate over the children that can
            # take a request now (a change is rare; a pick compares one integer).
            self._seen = HEALTH_EPOCH.value
            self._rotation.rotate([c for c in self._children if c.service.available])
        picked = self._rotation.pick()
        return None if picked is None else picked.service

    def balancers(self) -> Iterator[LoadBalancer]:
        for child in self.children:
            yield from child.balancers()
