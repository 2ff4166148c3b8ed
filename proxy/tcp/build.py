"""A dynamic configuration's ``tcp`` section -> TCP routes per entry point (in a snapshot).

Called by the snapshot builder with its ``issue``/``warn`` reporters, so every
problem is a ``ConfigIssue`` naming the provider's source and the key path
(``tcp.services.db.loadBalancer.servers[0].address``), and a snapshot with any
issue never goes live.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import msgspec

from proxy.config.common import UNSUPPORTED, rule_problem, set_fields
from proxy.config.dynamic import (
    DynamicConfig,
    TCPMiddleware,
    TCPRouter,
    TCPServersTransport,
    TCPService,
)
from proxy.config.static import StaticConfig
from proxy.rules import MAX_USER_PRIORITY, Route, RuleError, compile_node
from proxy.rules.tcp import (
    TCP_MATCHERS,
    build_tcp_table,
    host_sni_values,
    parse_tcp_rule,
    tcp_default_priority,
)
from proxy.tcp.middlewares import REGISTRY, TcpMiddleware, TcpMiddlewareError
from proxy.tcp.routing import TcpEntry, TcpTarget
from proxy.tcp.service import TcpBalancer, TcpServer, TcpTransport, TcpWeighted, split_address

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Sources", "TcpBuild", "build_tcp"]


Service = TcpBalancer | TcpWeighted


@dataclass(slots=True)
class TcpBuild:
    entries: dict[str, TcpEntry] = field(default_factory=dict)
    targets: dict[str, TcpTarget] = field(default_factory=dict)
    router_configs: dict[str, TCPRouter] = field(default_factory=dict)
    service_configs: dict[str, TCPService] = field(default_factory=dict)
    middleware_configs: dict[str, TCPMiddleware] = field(default_factory=dict)
    # Built middlewares with the options they were built from: an unchanged one
    # keeps its state (inFlightConn counts) across snapshot swaps.
    handlers: dict[str, tuple[bytes, TcpMiddleware]] = field(default_factory=dict)


def qualify(name: str, provider: str) -> str:
    return name if "@" in name else f"{name}@{provider}"


class Sources:
    """The snapshot builder's view: each provider's config, and where issues go."""

    def __init__(
        self,
        each: Callable[[], Iterator[DynamicConfig]],
        provider: Callable[[], str],
        issue: Callable[[str, str], None],
        warn: Callable[[str, str], None],
    ) -> None:
        self.each = each
        self.provider = provider
        self.issue = issue
        self.warn = warn


def build_tcp(
    sources: Sources,
    static: StaticConfig,
    entrypoints: Sequence[str],
    previous: dict[str, tuple[bytes, TcpMiddleware]],
) -> TcpBuild:
    return _TcpBuilder(sources, static, entrypoints, previous).build()


class _TcpBuilder:
    def __init__(
        self,
        sources: Sources,
        static: StaticConfig,
        entrypoints: Sequence[str],
        previous: dict[str, tuple[bytes, TcpMiddleware]],
    ) -> None:
        self.sources = sources
        self.static = static
        self.entrypoints = list(entrypoints)
        self.previous = previous
        self.result = TcpBuild()

    @property
    def provider(self) -> str:
        return self.sources.provider()

    def issue(self, path: str, message: str) -> None:
        self.sources.issue(path, message)

    def build(self) -> TcpBuild:
        result = self.result
        transports: dict[str, TcpTransport] = {}
        for dynamic in self.sources.each():
            tcp = dynamic.tcp
            for name, config in tcp.servers_transports.items():
                built = self._transport(config, f"tcp.serversTransports.{name}")
                if built is not None:
                    transports[qualify(name, self.provider)] = built
            for name, service in tcp.services.items():
                result.service_configs[qualify(name, self.provider)] = service
            for name, middleware in tcp.middlewares.items():
                result.middleware_configs[qualify(name, self.provider)] = middleware

        services: dict[str, Service] = {}
        for dynamic in self.sources.each():
            for name, service in dynamic.tcp.services.items():
                built = self._balancer(name, service, transports)
                if built is not None:
                    services[qualify(name, self.provider)] = built
        for dynamic in self.sources.each():
            for name in dynamic.tcp.services:
                self._weighted(qualify(name, self.provider), services, [])

        for dynamic in self.sources.each():
            for name, middleware in dynamic.tcp.middlewares.items():
                built = self._middleware(name, middleware)
                if built is not None:
                    result.handlers[qualify(name, self.provider)] = built

        plain: dict[str, list[Route]] = {name: [] for name in self.entrypoints}
        passthrough: dict[str, list[Route]] = {name: [] for name in self.entrypoints}
        # Traefik leaves equal priorities to map order: say so, as for HTTP routers.
        same_rule: dict[tuple[bool, str, int], list[tuple[str, frozenset[str]]]] = {}
        for dynamic in self.sources.each():
            for name, router in dynamic.tcp.routers.items():
                target = self._router(name, router, services)
                if target is None:
                    continue
                qualified = target.router
                result.targets[qualified] = target
                result.router_configs[qualified] = router
                path = f"tcp.routers.{name}"
                for index, entrypoint in enumerate(router.entry_points):
                    if entrypoint not in plain:
                        self.issue(
                            f"{path}.entryPoints[{index}]", f"unknown entry point {entrypoint!r}"
                        )
                routes = passthrough if router.tls is not None else plain
                route = Route(qualified, router.rule, router.priority, target)
                on = frozenset(e for e in router.entry_points or self.entrypoints if e in routes)
                for entrypoint in on:
                    routes[entrypoint].append(route)
                priority = router.priority or tcp_default_priority(router.rule)
                key = (router.tls is not None, router.rule.strip(), priority)
                for other, other_on in same_rule.get(key, []):
                    if on & other_on:
                        self.sources.warn(
                            f"{path}.rule",
                            f"same rule and priority ({priority}) as router {other!r}; "
                            "which of the two takes a connection is not defined",
                        )
                        break
                same_rule.setdefault(key, []).append((qualified, on))

        for entrypoint in self.entrypoints:
            tables = []
            for routes in (plain[entrypoint], passthrough[entrypoint]):
                if not routes:
                    tables.append(None)
                    continue
                table, errors = build_tcp_table(routes)
                for error in errors:
                    self._rule_issue(error)
                tables.append(table)
            if tables[0] is not None or tables[1] is not None:
                result.entries[entrypoint] = TcpEntry(
                    tables[0], tables[1], tables[0] is not None and tables[1] is None
                )
        return result

    # -- routers ---------------------------------------------------------------------

    def _router(
        self, name: str, router: TCPRouter, services: dict[str, Service]
    ) -> TcpTarget | None:
        path = f"tcp.routers.{name}"
        problem = rule_problem(router.rule, router.rule_syntax)
        if problem is not None:
            self.issue(f"{path}.{problem[0]}", problem[1])
            return None
        try:
            node = parse_tcp_rule(router.rule)
            compile_node(
                node, TCP_MATCHERS
            )  # values too (CIDRs, regexps), while the source is known
        except RuleError as error:
            self.issue(f"{path}.rule", str(error))
            return None
        if router.priority is not None and router.priority > MAX_USER_PRIORITY:
            self.issue(
                f"{path}.priority",
                f"the router priority {router.priority} exceeds the max user-defined priority "
                f"{MAX_USER_PRIORITY}",
            )
            return None
        if router.tls is not None and not router.tls.passthrough:
            self.issue(f"{path}.tls", f"TLS termination {UNSUPPORTED} (use tls.passthrough = true)")
            return None
        if router.tls is None and any(value != "*" for value in host_sni_values(node)):
            # Traefik marks such a router in error: without TLS there is no server name.
            self.issue(
                f"{path}.rule",
                "HostSNI with a domain needs tls on the router (only HostSNI(`*`) "
                "matches non-TLS connections)",
            )
            return None
        if not router.service:
            self.issue(f"{path}.service", "a router needs a service")
            return None
        service_name = qualify(router.service, self.provider)
        service = services.get(service_name)
        if service is None:
            if service_name not in self.result.service_configs:
                self.issue(f"{path}.service", f"unknown service {router.service!r}")
            return None  # else the service was refused and reported
        middlewares: list[TcpMiddleware] = []
        for index, middleware in enumerate(router.middlewares):
            qualified = qualify(middleware, self.provider)
            if qualified not in self.result.middleware_configs:
                self.issue(f"{path}.middlewares[{index}]", f"unknown middleware {middleware!r}")
                continue
            built = self.result.handlers.get(qualified)
            if built is not None:
                middlewares.append(built[1])
        return TcpTarget(qualify(name, self.provider), service, tuple(middlewares))

    def _rule_issue(self, error: RuleError) -> None:
        # Errors at compile time (a bad CIDR, regexp, priority): name the router's rule.
        router = error.router or ""
        name = router.rpartition("@")[0] or router
        self.issue(f"tcp.routers.{name}.rule", str(error))

    # -- services -----------------------------------------------------------------------

    def _balancer(
        self, name: str, service: TCPService, transports: dict[str, TcpTransport]
    ) -> TcpBalancer | None:
        path = f"tcp.services.{name}"
        kinds = [
            k
            for k, v in (("loadBalancer", service.load_balancer), ("weighted", service.weighted))
            if v
        ]
        if len(kinds) != 1:
            found = f"; found {', '.join(kinds)}" if kinds else ""
            self.issue(path, f"a TCP service needs exactly one of loadBalancer, weighted{found}")
            return None
        balancer = service.load_balancer
        if balancer is None:
            return None  # weighted: built once every balancer exists
        path += ".loadBalancer"
        if balancer.health_check is not None:
            self.issue(f"{path}.healthCheck", f"TCP health checks {UNSUPPORTED}")
            return None
        transport = self._default_transport()
        if balancer.servers_transport:
            found = transports.get(qualify(balancer.servers_transport, self.provider))
            if found is None:
                self.issue(
                    f"{path}.serversTransport",
                    f"unknown serversTransport {balancer.servers_transport!r}",
                )
                return None
            transport = found
        # The deprecated loadBalancer keys, which Traefik v3 still reads, win over the transport.
        if balancer.proxy_protocol is not None:
            version = balancer.proxy_protocol.version
            if version not in (1, 2):
                self.issue(f"{path}.proxyProtocol.version", "version must be 1 or 2")
                return None
            transport = replace(transport, proxy_protocol=version)
        if balancer.termination_delay is not None:
            transport = replace(transport, termination_delay=balancer.termination_delay / 1000)
        servers: list[TcpServer] = []
        for index, server in enumerate(balancer.servers):
            where = f"{path}.servers[{index}].address"
            if not server.address:
                self.issue(where, "a server needs an address")
                return None
            try:
                host, port = split_address(server.address)
            except ValueError as error:
                self.issue(where, f"invalid address {server.address!r}: {error}")
                return None
            if server.tls and transport.ssl is None:
                transport = replace(transport, ssl=ssl.create_default_context())
            servers.append(TcpServer(server.address, host, port, server.tls, transport))
        return TcpBalancer(qualify(name, self.provider), servers)

    def _weighted(
        self, qualified: str, services: dict[str, Service], trail: list[str]
    ) -> Service | None:
        built = services.get(qualified)
        if built is not None:
            return built
        config = self.result.service_configs.get(qualified)
        if config is None or config.weighted is None or config.load_balancer is not None:
            return None
        name, _, provider = qualified.rpartition("@")
        path = f"tcp.services.{name}.weighted"
        if qualified in trail:
            self.issue(path, "weighted services loop: " + " -> ".join([*trail, qualified]))
            return None
        if config.weighted.health_check is not None:
            self.issue(f"{path}.healthCheck", f"health checks {UNSUPPORTED}")
            return None
        members: list[tuple[Service, int]] = []
        ok = True
        for index, member in enumerate(config.weighted.services):
            where = f"{path}.services[{index}]"
            if member.effective_weight < 0:
                self.issue(f"{where}.weight", "weight must not be negative")
                ok = False
                continue
            child_name = qualify(member.name, provider)
            if child_name not in self.result.service_configs:
                self.issue(f"{where}.name", f"unknown service {member.name!r}")
                ok = False
                continue
            child = self._weighted(child_name, services, [*trail, qualified])
            if child is None:
                ok = False
                continue
            members.append((child, member.effective_weight))
        if not ok:
            return None
        weighted = TcpWeighted(qualified, members)
        services[qualified] = weighted
        return weighted

    # -- transports ------------------------------------------------------------------------

    def _default_transport(self) -> TcpTransport:
        static = self.static.tcp_servers_transport
        context = None
        if static.tls is not None:
            context = ssl.create_default_context()
            if static.tls.insecure_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            for ca in static.tls.root_cas:
                try:
                    context.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as error:
                    self.issue("tcpServersTransport.tls.rootCAs", f"cannot load {ca!r}: {error}")
        return TcpTransport(
            float(static.dial_timeout),
            float(static.dial_keep_alive),
            float(static.termination_delay),
            0,
            context,
            "",
        )

    def _transport(self, config: TCPServersTransport, path: str) -> TcpTransport | None:
        version = 0
        if config.proxy_protocol is not None:
            version = config.proxy_protocol.version
            if version not in (1, 2):
                self.issue(f"{path}.proxyProtocol.version", "version must be 1 or 2")
                return None
        context: ssl.SSLContext | None = None
        server_name = ""
        tls = config.tls
        if tls is not None:
            if tls.spiffe is not None:
                self.issue(f"{path}.tls.spiffe", f"SPIFFE {UNSUPPORTED}")
                return None
            if tls.peer_cert_uri:
                self.issue(f"{path}.tls.peerCertURI", f"peerCertURI {UNSUPPORTED}")
                return None
            context = ssl.create_default_context()
            if tls.insecure_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            for index, ca in enumerate(tls.root_cas):
                try:
                    context.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as error:
                    self.issue(f"{path}.tls.rootCAs[{index}]", f"cannot load {ca!r}: {error}")
                    return None
            for index, certificate in enumerate(tls.certificates):
                try:
                    context.load_cert_chain(certificate.cert_file, certificate.key_file or None)
                except (OSError, ssl.SSLError) as error:
                    self.issue(
                        f"{path}.tls.certificates[{index}]",
                        f"cannot load {certificate.cert_file!r}: {error} (give file paths)",
                    )
                    return None
            server_name = tls.server_name
        return TcpTransport(
            float(config.dial_timeout),
            float(config.dial_keep_alive),
            float(config.termination_delay),
            version,
            context,
            server_name,
        )

    # -- middlewares -------------------------------------------------------------------------

    def _middleware(self, name: str, config: TCPMiddleware) -> tuple[bytes, TcpMiddleware] | None:
        path = f"tcp.middlewares.{name}"
        kinds = set_fields(config)
        if len(kinds) != 1:
            found = f"; found {', '.join(e for _, e in kinds)}" if kinds else ""
            self.issue(path, f"a TCP middleware needs exactly one type{found}")
            return None
        attr, encoded = kinds[0]
        options = getattr(config, attr)
        qualified = qualify(name, self.provider)
        key = attr.encode() + msgspec.json.encode(options)
        previous = self.previous.get(qualified)
        if previous is not None and previous[0] == key:
            return previous
        try:
            middleware = REGISTRY()[attr](qualified, options)
        except TcpMiddlewareError as error:
            where = f"{path}.{encoded}" + (f".{error.key}" if error.key else "")
            self.issue(where, str(error))
            return None
        return key, middleware
