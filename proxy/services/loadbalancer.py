"""The loadBalancer service: smooth weighted round-robin over a list of servers.

Smooth WRR (the algorithm of nginx and of Traefik's wrr strategy) spreads a
server's turns evenly instead of in bursts: weights 5:1:1 give
a a b a c a a, not a a a a a b c.

Health: every server is UP until a health check (``proxy.services.healthcheck``)
says otherwise. A change of state rebuilds the rotation list once, so a pick
never looks at a DOWN server and costs what it cost without health checks.
The states are read with ``server_states()`` (the API, the dashboard and the
``service_server_up`` metric).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from proxy.http.errors import ServiceUnavailable
from proxy.http.exchange import forward_head

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.http.exchange import Exchange
    from proxy.http.upstream import ServerPool
    from proxy.services.healthcheck import HealthCheckSpec, PassiveHealthCheck

log = logging.getLogger("turnout.health")

UP: Final = "UP"
DOWN: Final = "DOWN"


class Server:
    __slots__ = ("host_header", "pool", "reason", "up", "url", "weight")

    def __init__(self, url: str, pool: ServerPool | None, host_header: bytes, weight: int) -> None:
        self.url = url
        # None only in the snapshots `turnout check` builds, which never serve.
        self.pool = pool
        self.host_header = host_header  # Host sent when passHostHeader is false or Host is absent
        self.weight = weight
        # Traefik's servers are UP until a check fails; ``reason`` says why one is DOWN.
        self.up = True
        self.reason = ""


class HealthEpoch:
    """Counts the changes of any server's state; a weighted parent rebuilds its rotation on one.

    Changed by ``set_status`` only, on the event loop: a parent compares one
    integer per pick instead of asking every child.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


HEALTH_EPOCH: Final = HealthEpoch()


class SmoothRotation:
    """Smooth weighted round-robin over members that have an int ``weight``.

    Weight 0 takes a member out of rotation, as in Traefik. Shared by HTTP load
    balancers and the UDP services (servers, and services of a weighted one).
    """

    __slots__ = ("_current", "_next", "_total", "_uniform", "servers")

    def __init__(self, members: Iterable[Any] = ()) -> None:
        self.rotate(members)

    def rotate(self, members: Iterable[Any]) -> None:
        """Start a new rotation over ``members``."""
        self.servers = [member for member in members if member.weight > 0]
        self._current = [0] * len(self.servers)
        self._total = sum(member.weight for member in self.servers)
        self._uniform = len({member.weight for member in self.servers}) <= 1
        self._next = 0

    def pick(self) -> Any:
        servers = self.servers
        if not servers:
            return None
        if self._uniform:
            # Equal weights: smooth WRR degenerates to plain rotation; skip the arithmetic.
            index = self._next
            self._next = (index + 1) % len(servers)
            return servers[index]
        current = self._current
        best = 0
        best_value = None
        for index, server in enumerate(servers):
            current[index] += server.weight
            if best_value is None or current[index] > best_value:
                best, best_value = index, current[index]
        current[best] -= self._total
        return servers[best]


class LoadBalancer(SmoothRotation):
    __slots__ = ("available", "health", "members", "name", "pass_host_header", "passive")

    servers: list[Server]  # the rotation: UP servers of weight > 0

    def __init__(
        self,
        name: str,
        servers: list[Server],
        pass_host_header: bool,
        health: HealthCheckSpec | None = None,
        passive: PassiveHealthCheck | None = None,
    ) -> None:
        self.name = name
        # Every configured server, in configuration order (what the API shows).
        self.members = servers
        self.pass_host_header = pass_host_header
        self.health = health  # None: no active health check
        self.passive = passive  # None: the answers of servers are not watched
        if passive is not None:
            passive.balancer = self
        super().__init__()
        self.rebuild()

    def server_states(self) -> dict[str, str]:
        """Each server's state by URL, ``"UP"`` or ``"DOWN"`` (Traefik's ``serverStatus``)."""
        return {server.url: UP if server.up else DOWN for server in self.members}

    def set_status(self, server: Server, up: bool, reason: str = "") -> None:
        """Record a health check's verdict; a change rebuilds the rotation and is logged."""
        server.reason = "" if up else reason
        if server.up == up:
            return
        server.up = up
        self.rebuild()
        HEALTH_EPOCH.value += 1
        if up:
            log.info("server %s of service %s is UP", server.url, self.name)
        else:
            log.info("server %s of service %s is DOWN: %s", server.url, self.name, reason)

    def rebuild(self) -> None:
        """Recompute the rotation from the members (after a change of their states)."""
        self.rotate([server for server in self.members if server.up])
        # Whether a request sent here can reach a server (what a parent service asks):
        # an attribute, not a property, as a weighted parent reads it at every pick.
        self.available = bool(self.servers)

    def pick_server(self) -> tuple[LoadBalancer, Server] | None:
        server = self.pick()
        return None if server is None else (self, server)

    def balancers(self) -> Iterator[LoadBalancer]:
        yield self

    def serve(self, exchange: Exchange) -> None:
        server = self.pick()
        if server is None:
            exchange.conn.exchange_failed(exchange, ServiceUnavailable("no available server"))
            return
        if self.passive is not None:
            exchange.watched = (self.passive, server)
        exchange.server_url = server.url
        head = forward_head(exchange, server.host_header, self.pass_host_header)
        pool = server.pool
        assert pool is not None  # a snapshot that serves has pools
        exchange.forward(pool, head)
