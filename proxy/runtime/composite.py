"""Building the services made of other services: weighted, failover, mirroring.

Called by the snapshot builder once every load balancer is built. A service
may name services of any provider and of any kind, so each is built on
demand, depth first, with cycles reported. Health propagation is checked as
Traefik checks it: a parent with ``healthCheck`` (and a failover's main
service, always) needs children that report their health, that is load
balancers with ``healthCheck`` or weighted, failover and mirroring services
with ``healthCheck``. An unchanged service (same configuration, same child
objects) keeps its object across a swap, and so its rotation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from proxy.config.dynamic import Service
from proxy.services.failover import Failover
from proxy.services.loadbalancer import LoadBalancer
from proxy.services.mirroring import Mirroring
from proxy.services.weighted import Weighted

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.http.exchange import Exchange
    from proxy.services.base import HttpService

# Everything a router or a parent service can hand a request to.
SERVICE_TYPES = (LoadBalancer, Weighted, Failover, Mirroring)

KINDS = (
    ("load_balancer", "loadBalancer"),
    ("weighted", "weighted"),
    ("mirroring", "mirroring"),
    ("failover", "failover"),
    ("highest_random_weight", "highestRandomWeight"),
)


def kinds_of(config: Service) -> list[str]:
    """The service types set in ``config``, by their configuration names."""
    return [encoded for attr, encoded in KINDS if getattr(config, attr) is not None]


def reports_health(config: Service) -> bool:
    """Whether a service tells its parent when it goes down (Traefik's StatusUpdater)."""
    if config.load_balancer is not None:
        return config.load_balancer.health_check is not None
    for part in (config.weighted, config.mirroring, config.failover):
        if part is not None:
            return part.health_check is not None
    return False


class CompositeBuilder:
    """Builds the composite services of one snapshot; issues go to ``issue``."""

    def __init__(
        self,
        configs: dict[str, Service],
        origins: dict[str, str],
        services: dict[str, HttpService | Callable[[Exchange], None]],
        previous: dict[str, Any] | None,
        issue: Callable[[str, str, str], None],
    ) -> None:
        self.configs = configs
        self.origins = origins  # qualified name -> the source that defines it
        self.services = services
        self.previous = previous or {}
        self.issue = issue  # (source, path, message)
        self._failed: set[str] = set()
        self._building: list[str] = []

    def build_all(self) -> None:
        for qualified, config in self.configs.items():
            if config.load_balancer is None and len(kinds_of(config)) == 1:
                self.build(qualified)

    def build(self, qualified: str) -> HttpService | None:
        found = self.services.get(qualified)
        if found is not None:
            return found if isinstance(found, SERVICE_TYPES) else None
        config = self.configs.get(qualified)
        if config is None or qualified in self._failed or config.load_balancer is not None:
            return None  # unknown (the caller says so) or refused (reported already)
        if config.highest_random_weight is not None:
            return None  # refused as not supported
        if qualified in self._building:
            cycle = [*self._building[self._building.index(qualified) :], qualified]
            self._report(qualified, "", "service cycle: " + " -> ".join(cycle))
            self._failed.add(qualified)
            return None
        self._building.append(qualified)
        try:
            if config.weighted is not None:
                built = self._weighted(qualified, config)
            elif config.failover is not None:
                built = self._failover(qualified, config)
            else:
                built = self._mirroring(qualified, config)
        finally:
            self._building.pop()
        if built is None:
            self._failed.add(qualified)
            return None
        old = self.previous.get(qualified)
        if type(old) is type(built) and old.key == built.key:
            built = old  # unchanged, and so are its children: keep its rotation
        self.services[qualified] = built
        return built

    # -- one kind each ---------------------------------------------------------

    def _weighted(self, qualified: str, config: Service) -> Weighted | None:
        weighted = config.weighted
        assert weighted is not None
        health = weighted.health_check is not None
        children: list[tuple[HttpService, int]] = []
        ok = True
        for index, child in enumerate(weighted.services):
            where = f"weighted.services[{index}]"
            if child.effective_weight < 0:
                self._report(qualified, f"{where}.weight", "weight must not be negative")
                ok = False
                continue
            service = self._child(qualified, f"{where}.name", child.name, needs_health=health)
            if service is None:
                ok = False
                continue
            children.append((service, child.effective_weight))
        if not ok:
            return None
        key = _key(config, [service for service, _ in children])
        return Weighted(qualified, children, health, key)

    def _failover(self, qualified: str, config: Service) -> Failover | None:
        failover = config.failover
        assert failover is not None
        health = failover.health_check is not None
        main = self._child(qualified, "failover.service", failover.service, needs_health=True)
        fallback = self._child(
            qualified, "failover.fallback", failover.fallback, needs_health=health
        )
        if main is None or fallback is None:
            return None
        return Failover(qualified, main, fallback, health, _key(config, [main, fallback]))

    def _mirroring(self, qualified: str, config: Service) -> Mirroring | None:
        mirroring = config.mirroring
        assert mirroring is not None
        health = mirroring.health_check is not None
        main = self._child(qualified, "mirroring.service", mirroring.service, needs_health=health)
        ok = main is not None
        mirrors: list[tuple[HttpService, int]] = []
        for index, mirror in enumerate(mirroring.mirrors):
            where = f"mirroring.mirrors[{index}]"
            if not 0 <= mirror.percent <= 100:
                self._report(
                    qualified, f"{where}.percent", f"must be 0 to 100, got {mirror.percent}"
                )
                ok = False
            service = self._child(qualified, f"{where}.name", mirror.name, needs_health=False)
            if service is None:
                ok = False
                continue
            mirrors.append((service, mirror.percent))
        if not ok or main is None:
            return None
        return Mirroring(
            qualified,
            main,
            mirrors,
            mirror_body=mirroring.mirror_body,
            max_body=mirroring.max_body_size,
            health=health,
            key=_key(config, [main, *(service for service, _ in mirrors)]),
        )

    # -- helpers -----------------------------------------------------------------

    def _child(self, parent: str, key: str, name: str, *, needs_health: bool) -> HttpService | None:
        """The service a parent names at ``key``; None (reported) if it cannot be used."""
        if not name:
            self._report(parent, key, "a service name is required")
            return None
        provider = parent.rpartition("@")[2]
        qualified = name if "@" in name else f"{name}@{provider}"
        config = self.configs.get(qualified)
        existing = self.services.get(qualified)
        if config is None and existing is None:
            self._report(parent, key, f"unknown service {name!r}")
            return None
        if config is None:
            self._report(parent, key, f"service {name!r} cannot be used by another service")
            return None
        if needs_health and not reports_health(config):
            self._report(
                parent,
                key,
                f"service {name!r} has no healthCheck, so it cannot report its health "
                f"to {parent!r}",
            )
            return None
        return self.build(qualified)

    def _report(self, qualified: str, key: str, message: str) -> None:
        source = self.origins.get(qualified, "")
        name = qualified.rpartition("@")[0]
        path = f"http.services.{name}" + (f".{key}" if key else "")
        self.issue(source, path, message)


def _key(config: Service, children: list[HttpService]) -> bytes:
    """What a service was built from: its configuration and its children's objects."""
    identities = ",".join(str(id(child)) for child in children)
    return msgspec.json.encode(config, enc_hook=float) + b"|" + identities.encode()


__all__ = ["SERVICE_TYPES", "CompositeBuilder", "kinds_of", "reports_health"]
