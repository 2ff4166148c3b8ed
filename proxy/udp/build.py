"""The ``udp`` section of a snapshot: routers per UDP entry point and their services.

UDP routers have no rule: a router takes every datagram of the entry points
it names (all UDP entry points when it names none, as in Traefik). Traefik
warns when one entry point has several UDP routers and then uses one of them,
whichever its map iteration gives first; Turnout warns too and uses the first
by qualified name, so the choice does not change from one run to the next. A
UDP router naming an entry point that is not ``/udp`` is an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from proxy.config.dynamic import UDPRouter, UDPService
from proxy.config.load import ConfigIssue
from proxy.config.static import AddressError, StaticConfig, parse_address
from proxy.runtime.internal import default_entrypoints
from proxy.tcp.service import split_address
from proxy.udp.service import (
    UdpLoadBalancer,
    UdpServer,
    UdpService,
    UdpWeighted,
    WeightedMember,
)

if TYPE_CHECKING:
    from proxy.runtime.snapshot import _Builder


@dataclass(frozen=True, slots=True)
class UdpRoute:
    router: str
    service: UdpService


@dataclass(slots=True)
class UdpRouting:
    routes: dict[str, UdpRoute] = field(default_factory=dict)  # entry point -> its router
    services: dict[str, UdpService] = field(default_factory=dict)
    # Off the hot path: what check and the API read, and what the next build reuses.
    router_configs: dict[str, UDPRouter] = field(default_factory=dict)
    service_configs: dict[str, UDPService] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)


def udp_entrypoints(static: StaticConfig) -> set[str]:
    names = set()
    for name, entrypoint in static.entry_points.items():
        try:
            if parse_address(entrypoint.address)[2] == "udp":
                names.add(name)
        except AddressError:
            pass
    return names


def _qualify(name: str, provider: str) -> str:
    return name if "@" in name else f"{name}@{provider}"


@dataclass(slots=True)
class _Definition:
    name: str
    config: UDPService
    provider: str
    source: str


class _UdpBuilder:
    def __init__(self, builder: _Builder, entrypoints: list[str]) -> None:
        self.builder = builder
        self.entrypoints = entrypoints
        self.udp = udp_entrypoints(builder.static) & set(entrypoints)
        self.defaults = default_entrypoints(builder.static, entrypoints)
        previous = builder.previous
        self.previous: UdpRouting | None = previous.udp if previous is not None else None
        self.definitions: dict[str, _Definition] = {}
        self.built: dict[str, UdpService | None] = {}
        self.routing = UdpRouting()

    def issue(self, source: str, path: str, message: str) -> None:
        self.builder.issues.append(ConfigIssue(source, path, message))

    def warn(self, source: str, path: str, message: str) -> None:
        self.builder.warnings.append(ConfigIssue(source, path, message))

    def build(self) -> UdpRouting:
        builder = self.builder
        for dynamic in builder._each():
            for name, service in dynamic.udp.services.items():
                qualified = _qualify(name, builder.provider)
                self.definitions[qualified] = _Definition(
                    name, service, builder.provider, builder.source
                )
                self.routing.service_configs[qualified] = service
        for qualified in self.definitions:
            self._service(qualified, ())
        candidates: dict[str, list[tuple[str, str, str]]] = {}
        for dynamic in builder._each():
            for name, router in dynamic.udp.routers.items():
                for entrypoint, qualified in self._router(name, router):
                    candidates.setdefault(entrypoint, []).append((qualified, name, builder.source))
        for entrypoint, routers in candidates.items():
            routers.sort()
            chosen = routers[0][0]
            for _, name, source in routers[1:]:
                self.warn(
                    source,
                    f"udp.routers.{name}.entryPoints",
                    f"entry point {entrypoint!r} already has UDP router {chosen!r}; "
                    "one UDP router per entry point is used, this one is not",
                )
            router = self.routing.router_configs[chosen]
            service = self.built.get(_qualify(router.service, chosen.rpartition("@")[2]))
            if service is not None:
                self.routing.routes[entrypoint] = UdpRoute(chosen, service)
        return self.routing

    def _router(self, name: str, router: UDPRouter) -> list[tuple[str, str]]:
        builder = self.builder
        source, provider = builder.source, builder.provider
        path = f"udp.routers.{name}"
        qualified = _qualify(name, provider)
        self.routing.router_configs[qualified] = router
        ok = True
        if not router.service:
            self.issue(source, f"{path}.service", "a router needs a service")
            ok = False
        else:
            service = _qualify(router.service, provider)
            if service not in self.definitions:
                self.issue(source, f"{path}.service", f"unknown UDP service {router.service!r}")
                ok = False
        for index, entrypoint in enumerate(router.entry_points):
            if entrypoint not in self.entrypoints:
                self.issue(
                    source, f"{path}.entryPoints[{index}]", f"unknown entry point {entrypoint!r}"
                )
                ok = False
            elif entrypoint not in self.udp:
                self.issue(
                    source,
                    f"{path}.entryPoints[{index}]",
                    f"entry point {entrypoint!r} is not a UDP entry point "
                    "(its address needs the /udp suffix, e.g. ':5353/udp')",
                )
                ok = False
        # Traefik gives a router without entryPoints the default ones (asDefault,
        # else all but "traefik"); a UDP router serves the UDP ones among them.
        on = router.entry_points or [e for e in self.defaults if e in self.udp]
        if not on:
            self.issue(source, path, "no UDP entry point to serve this router")
            return []
        return [(entrypoint, qualified) for entrypoint in on] if ok else []

    def _service(self, qualified: str, stack: tuple[str, ...]) -> UdpService | None:
        if qualified in self.built:
            return self.built[qualified]
        definition = self.definitions[qualified]
        path = f"udp.services.{definition.name}"
        config = definition.config
        service: UdpService | None = None
        if (config.load_balancer is None) == (config.weighted is None):
            self.issue(
                definition.source, path, "a UDP service needs exactly one of loadBalancer, weighted"
            )
        elif config.load_balancer is not None:
            service = self._load_balancer(qualified, definition, path)
        else:
            service = self._weighted(qualified, definition, path, stack)
        self.built[qualified] = service
        if service is not None:
            self.routing.services[qualified] = service
        return service

    def _load_balancer(
        self, qualified: str, definition: _Definition, path: str
    ) -> UdpService | None:
        balancer = definition.config.load_balancer
        assert balancer is not None
        key = msgspec.json.encode(balancer)
        previous = self.previous
        if previous is not None and previous.keys.get(qualified) == key:
            old = previous.services.get(qualified)
            if isinstance(old, UdpLoadBalancer):
                self.routing.keys[qualified] = key
                return old  # unchanged: keep its rotation
        servers = []
        ok = True
        for index, server in enumerate(balancer.servers):
            try:
                # Traefik's UDP and TCP server addresses are both Go's host:port.
                host, port = split_address(server.address)
            except ValueError as error:
                self.issue(
                    definition.source,
                    f"{path}.loadBalancer.servers[{index}].address",
                    f"invalid address {server.address!r}: {error}",
                )
                ok = False
                continue
            servers.append(UdpServer(server.address, host, port))
        if not ok:
            return None
        if not servers:
            self.warn(
                definition.source,
                f"{path}.loadBalancer.servers",
                "no servers: datagrams routed to this service are dropped",
            )
        self.routing.keys[qualified] = key
        return UdpLoadBalancer(qualified, servers)

    def _weighted(
        self, qualified: str, definition: _Definition, path: str, stack: tuple[str, ...]
    ) -> UdpService | None:
        weighted = definition.config.weighted
        assert weighted is not None
        members = []
        ok = True
        stack = (*stack, qualified)
        for index, member in enumerate(weighted.services):
            member_path = f"{path}.weighted.services[{index}]"
            name = _qualify(member.name, definition.provider)
            if name in stack:
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                self.issue(definition.source, f"{member_path}.name", f"service cycle: {cycle}")
                ok = False
                continue
            if name not in self.definitions:
                self.issue(
                    definition.source, f"{member_path}.name", f"unknown UDP service {member.name!r}"
                )
                ok = False
                continue
            if member.effective_weight < 0:
                self.issue(
                    definition.source, f"{member_path}.weight", "weight must not be negative"
                )
                ok = False
                continue
            service = self._service(name, stack)
            if service is None:
                ok = False  # reported where it is defined
                continue
            members.append(WeightedMember(service, member.effective_weight))
        if not ok:
            return None
        return UdpWeighted(qualified, members)


def build_udp(builder: _Builder, entrypoints: list[str]) -> UdpRouting:
    """Compile every provider's ``udp`` section; problems go to the builder's issues."""
    return _UdpBuilder(builder, entrypoints).build()
