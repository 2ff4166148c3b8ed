"""A snapshot: the dynamic configurations of every provider, validated and compiled together.

``build_merged`` turns one ``DynamicConfig`` per provider into router tables
(one per entry point), load balancers and backend pools. It never raises on
bad configuration: it returns every problem as a ``ConfigIssue`` naming the
provider's file or source, and a caller that gets any issue keeps the snapshot
it has. A request holds a reference to the snapshot it started on, so swapping
one in is a single assignment.

Names are qualified as Traefik qualifies them: ``NAME@provider``; a reference
without ``@`` means the same provider, ``NAME@other`` reaches across
providers, and ``@internal`` names Turnout's built-in services.

A rebuild reuses what did not change: a service whose configuration (and
transport) is identical keeps its ``LoadBalancer`` object, so its rotation
state and its pools carry over; a route list identical to the previous one
for an entry point keeps its compiled ``RouterTable``; entry points with the
same routes share one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from proxy.config.common import UNSUPPORTED, rule_problem, set_fields
from proxy.config.dynamic import DynamicConfig, Middleware, Router, ServersLoadBalancer, Service
from proxy.config.load import ConfigIssue
from proxy.config.static import ServersTransport, StaticConfig
from proxy.http.upstream import ServerPool, client_tls
from proxy.middlewares import load_all
from proxy.middlewares.base import BuildContext, Builder, BuildError, Handler
from proxy.middlewares.chain import CompiledChain
from proxy.middlewares.encoded_characters import entry_point_check
from proxy.observability.metrics import REGISTRY, RouteStats
from proxy.rules import Route, RouterTable, build_table, default_priority
from proxy.runtime.composite import SERVICE_TYPES, CompositeBuilder, kinds_of
from proxy.runtime.internal import PROVIDER as INTERNAL_PROVIDER
from proxy.runtime.internal import default_entrypoints, internal_config, internal_services
from proxy.services.healthcheck import HealthCheckError, compile_health_check, compile_passive
from proxy.services.loadbalancer import LoadBalancer, Server
from proxy.tcp.build import Sources, TcpBuild, build_tcp
from proxy.udp.build import UdpRouting, build_udp, udp_entrypoints

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from proxy.http.exchange import Exchange
    from proxy.http.resolver import Resolver
    from proxy.services.base import HttpService


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """What a matched router leads to."""

    router: str
    service: HttpService | None
    internal: Callable[[Exchange], None] | None
    response_timeout: float
    chain: CompiledChain | None = None  # None: no middleware, the service is called directly
    # This router's request counters (proxy/observability/metrics.py); None in dry runs.
    stats: RouteStats | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider's complete dynamic configuration and where it came from."""

    provider: str  # the namespace: file, redis, etcd, http, consulcatalog
    dynamic: DynamicConfig
    source: str  # names the origin in messages: a file path, redis://host:port/rootKey


@dataclass(slots=True)
class Snapshot:
    tables: dict[str, RouterTable]
    services: dict[str, HttpService | Callable[[Exchange], None]]
    routers: dict[str, RouteTarget]
    rules: dict[str, str] = field(default_factory=dict)
    # Off the hot path: what check, explain and the API read.
    router_configs: dict[str, Router] = field(default_factory=dict)
    service_configs: dict[str, Service] = field(default_factory=dict)
    middlewares: dict[str, Middleware] = field(default_factory=dict)
    warnings: list[ConfigIssue] = field(default_factory=list)
    providers: tuple[ProviderConfig, ...] = ()
    # What the next build compares against to reuse balancers and tables.
    balancer_keys: dict[str, bytes] = field(default_factory=dict)
    route_lists: dict[str, tuple[Route, ...]] = field(default_factory=dict)
    # Built middlewares by qualified name, with the options they were built from:
    # an unchanged middleware keeps its state (rate-limit buckets, breaker) across swaps.
    handlers: dict[str, tuple[bytes, Handler]] = field(default_factory=dict)
    # TCP routing: ``tcp.entries`` by entry point (only those with TCP routers), and
    # the configurations and targets that check, explain and the API read.
    tcp: TcpBuild = field(default_factory=TcpBuild)
    udp: UdpRouting = field(default_factory=UdpRouting)

    @property
    def user_services(self) -> int:
        return sum(1 for name in self.services if not name.endswith("@internal"))

    def route(self, entrypoint: str, request: Exchange) -> RouteTarget | None:
        table = self.tables.get(entrypoint)
        if table is None:
            return None
        return table.match(request)  # type: ignore[return-value]

    def pools(self) -> set[ServerPool]:
        """Every backend pool this snapshot can send a request to."""
        used: set[ServerPool] = set()
        for service in self.services.values():
            if isinstance(service, LoadBalancer):
                # Every member, DOWN ones too: their pools serve again when they recover.
                used.update(server.pool for server in service.members if server.pool is not None)
        return used

    def balancers(self) -> list[LoadBalancer]:
        """Every load balancer of this snapshot (what the health checks follow)."""
        return [service for service in self.services.values() if isinstance(service, LoadBalancer)]


class PoolRegistry:
    """Backend pools by address and transport, kept across snapshots.

    A server that appears in the next snapshot unchanged keeps its pooled
    keep-alive connections.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, resolver: Resolver) -> None:
        self.loop = loop
        self.resolver = resolver
        self.pools: dict[tuple[Any, ...], ServerPool] = {}
        # Pools the live snapshot no longer uses: their idle connections are
        # closed, and requests still running on an older snapshot finish on them.
        self.retired: list[ServerPool] = []

    def get(self, scheme: str, host: str, port: int, transport: ServersTransport) -> ServerPool:
        key = (scheme, host, port, msgspec.json.encode(transport, enc_hook=float))
        pool = self.pools.get(key)
        if pool is None:
            timeouts = transport.forwarding_timeouts
            pool = ServerPool(
                self.loop,
                self.resolver,
                host,
                port,
                max_idle=max(transport.max_idle_conns_per_host, 0),
                idle_timeout=float(timeouts.idle_conn_timeout),
                dial_timeout=float(timeouts.dial_timeout),
                ssl=(
                    client_tls(transport.root_cas, transport.insecure_skip_verify)
                    if scheme == "https"
                    else None
                ),
            )
            self.pools[key] = pool
        return pool

    def all(self) -> Iterator[ServerPool]:
        # A list copy: snapshots are built on a worker thread that may add pools
        # while the sweeper walks them (list() of a dict view holds the GIL).
        return iter(list(self.pools.values()))

    def retain(self, used: set[ServerPool]) -> None:
        """Retire every pool that ``used`` (the live snapshot's pools) does not hold.

        Autoscaled backends come and go: without this, every server ever seen
        would keep its pool and idle sockets for the life of the process.
        """
        for key, pool in list(self.pools.items()):
            if pool not in used:
                del self.pools[key]
                self.retired.append(pool)
                _close_idle(pool)

    def sweep_retired(self) -> None:
        """Close connections that came back idle to retired pools; forget empty pools."""
        still: list[ServerPool] = []
        for pool in self.retired:
            _close_idle(pool)
            if pool.connections:
                still.append(pool)
        self.retired = still

    def close(self) -> None:
        for pool in [*self.pools.values(), *self.retired]:
            pool.close()


def _close_idle(pool: ServerPool) -> None:
    for conn in list(pool.idle):
        conn.close()
    pool.idle.clear()


def qualify(name: str, provider: str) -> str:
    return name if "@" in name else f"{name}@{provider}"


class _Builder:
    """One build. The provider being compiled is ``self.provider`` / ``self.source``."""

    def __init__(
        self,
        configs: Sequence[ProviderConfig],
        static: StaticConfig,
        pools: PoolRegistry | None,
        previous: Snapshot | None,
    ) -> None:
        self.configs = configs
        self.static = static
        self.pools = pools
        self.previous = previous
        self.provider = ""
        self.source = ""
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self.handlers: dict[str, tuple[bytes, Handler]] = {}
        self.middleware_configs: dict[str, Middleware] = {}

    def issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ConfigIssue(self.source, path, message))

    def _each(self) -> Iterator[DynamicConfig]:
        for config in self.configs:
            self.provider, self.source = config.provider, config.source
            yield config.dynamic

    def build(self, entrypoints: list[str]) -> Snapshot:
        previous = self.previous
        # Every provider's transports, services and middlewares first, so that a
        # router of one provider can name a service of another (``svc@redis``).
        transports: dict[str, ServersTransport] = {}
        middlewares: dict[str, Middleware] = {}
        service_configs: dict[str, Service] = {}
        origins: dict[str, str] = {}
        for dynamic in self._each():
            self._refuse_unsupported(dynamic)
            http = dynamic.http
            for name, transport in http.servers_transports.items():
                transports[qualify(name, self.provider)] = transport
            for name, middleware in http.middlewares.items():
                middlewares[qualify(name, self.provider)] = middleware
            for name, service in http.services.items():
                service_configs[qualify(name, self.provider)] = service
                origins[qualify(name, self.provider)] = self.source
                kinds = kinds_of(service)
                if len(kinds) > 1:
                    # Traefik: "multi-types service not supported".
                    self.issue(
                        f"http.services.{name}",
                        f"a service has one type; found {', '.join(kinds)}",
                    )
        for dynamic in self._each():
            self._check_chains(dynamic, middlewares)

        services: dict[str, HttpService | Callable[[Exchange], None]] = dict(
            internal_services(self.static)
        )
        timeouts: dict[str, float] = {}
        balancer_keys: dict[str, bytes] = {}
        for dynamic in self._each():
            for name, service in dynamic.http.services.items():
                path = f"http.services.{name}"
                if service.load_balancer is None:
                    if not kinds_of(service):
                        self.issue(
                            path,
                            "a service needs one of loadBalancer, weighted, "
                            "mirroring, failover, highestRandomWeight",
                        )
                    continue
                qualified = qualify(name, self.provider)
                built = self._load_balancer(name, service.load_balancer, transports, path)
                if built is None:
                    continue
                balancer, timeout, key = built
                old = previous.services.get(qualified) if previous is not None else None
                if (
                    isinstance(old, LoadBalancer)
                    and previous is not None
                    and previous.balancer_keys.get(qualified) == key
                ):
                    balancer = old  # unchanged: keep its rotation state and health
                elif isinstance(old, LoadBalancer):
                    _carry_health(old, balancer)
                services[qualified] = balancer
                timeouts[qualified] = timeout
                balancer_keys[qualified] = key
        CompositeBuilder(
            service_configs,
            origins,
            services,
            previous.services if previous is not None else None,
            lambda source, path, message: self.issues.append(ConfigIssue(source, path, message)),
        ).build_all()

        handlers: dict[str, tuple[bytes, Handler]] = {}
        registry = load_all()
        for dynamic in self._each():
            for name, middleware in dynamic.http.middlewares.items():
                built = self._middleware(name, middleware, registry, services)
                if built is not None:
                    handlers[qualify(name, self.provider)] = built
        self.handlers = handlers
        self.middleware_configs = middlewares

        udp = udp_entrypoints(self.static)
        routes: dict[str, list[Route]] = {name: [] for name in entrypoints if name not in udp}
        defaults = default_entrypoints(self.static, entrypoints)
        targets: dict[str, RouteTarget] = {}
        # Entry points whose http.encodedCharacters refuses something: every router there checks.
        checks = {
            name: check
            for name, config in self.static.entry_points.items()
            if (check := entry_point_check(name, config.http.encoded_characters)) is not None
        }
        rules: dict[str, str] = {}
        router_configs: dict[str, Router] = {}
        same_rule: dict[tuple[str, int], list[tuple[str, str, frozenset[str]]]] = {}
        for dynamic in self._each():
            for name, router in dynamic.http.routers.items():
                target = self._router(name, router, services, service_configs, middlewares)
                if target is None:
                    continue
                if target.service is not None:
                    target = RouteTarget(
                        target.router,
                        target.service,
                        None,
                        _response_timeout(target.service, timeouts),
                        target.chain,
                        target.stats,
                    )
                qualified = target.router
                old_target = previous.routers.get(qualified) if previous is not None else None
                if old_target == target:
                    target = old_target  # type: ignore[assignment]
                targets[qualified] = target
                rules[qualified] = router.rule
                router_configs[qualified] = router
                path = f"http.routers.{name}"
                for index, entrypoint in enumerate(router.entry_points):
                    if entrypoint in udp:
                        self.issue(
                            f"{path}.entryPoints[{index}]",
                            f"entry point {entrypoint!r} is a UDP entry point",
                        )
                    elif entrypoint not in routes:
                        self.issue(
                            f"{path}.entryPoints[{index}]", f"unknown entry point {entrypoint!r}"
                        )
                on = [e for e in (router.entry_points or defaults) if e in routes]
                route = Route(qualified, router.rule, router.priority, target)
                for entrypoint in on:
                    check = checks.get(entrypoint)
                    routes[entrypoint].append(route if check is None else _checked(route, check))
                priority = router.priority or default_priority(router.rule)
                same_rule.setdefault((router.rule.strip(), priority), []).append(
                    (qualified, self.source, frozenset(on))
                )
        self._warn_same_rule(same_rule)
        tcp = build_tcp(
            Sources(self._each, lambda: self.provider, self.issue, self.warn),
            self.static,
            [e for e in entrypoints if e not in udp],  # TCP routers never serve /udp ones
            previous.tcp.handlers if previous is not None else {},
        )

        tables: dict[str, RouterTable] = {}
        route_lists: dict[str, tuple[Route, ...]] = {}
        by_routes: dict[tuple[Route, ...], RouterTable] = {}
        reported: set[str] = set()
        for entrypoint, entrypoint_routes in routes.items():
            key = tuple(entrypoint_routes)
            route_lists[entrypoint] = key
            table = by_routes.get(key)
            if (
                table is None
                and previous is not None
                and previous.route_lists.get(entrypoint) == key
            ):
                table = previous.tables.get(entrypoint)
            if table is None:
                table, errors = build_table(entrypoint_routes)
                for error in errors:
                    router_name = error.router or ""
                    if router_name not in reported:
                        reported.add(router_name)
                        self._rule_issue(router_name, str(error))
            by_routes[key] = table
            tables[entrypoint] = table
        udp_routing = build_udp(self, entrypoints)
        return Snapshot(
            tables=tables,
            services=services,
            routers=targets,
            rules=rules,
            router_configs=router_configs,
            service_configs=service_configs,
            middlewares=middlewares,
            warnings=self.warnings,
            providers=tuple(self.configs),
            balancer_keys=balancer_keys,
            route_lists=route_lists,
            handlers=handlers,
            tcp=tcp,
            udp=udp_routing,
        )

    def _router(
        self,
        name: str,
        router: Router,
        services: dict[str, HttpService | Callable[[Exchange], None]],
        service_configs: dict[str, Service],
        middlewares: dict[str, Middleware],
    ) -> RouteTarget | None:
        path = f"http.routers.{name}"
        qualified = qualify(name, self.provider)
        problem = rule_problem(router.rule, router.rule_syntax)
        if problem is not None:
            self.issue(f"{path}.{problem[0]}", problem[1])
            return None
        if not router.service:
            self.issue(f"{path}.service", "a router needs a service")
            return None
        service_name = qualify(router.service, self.provider)
        service = services.get(service_name)
        if service is None:
            if service_name not in service_configs:
                self.issue(f"{path}.service", f"unknown service {router.service!r}")
            return None  # else the service itself was refused and reported
        chain: list[Handler] = []
        for index, middleware in enumerate(router.middlewares):
            if qualify(middleware, self.provider) not in middlewares:
                self.issue(f"{path}.middlewares[{index}]", f"unknown middleware {middleware!r}")
            else:
                # A member that was refused is reported (so this snapshot never goes
                # live) and left out, so that check and explain still show the router.
                self._flatten(qualify(middleware, self.provider), chain, 0)
        compiled = CompiledChain(tuple(chain)) if chain else None
        # A dry run (no pools: turnout check, POST /api/check) counts nothing, and
        # internal routers count only with metrics.addInternals, as in Traefik.
        counted = self.pools is not None and (
            self.provider != INTERNAL_PROVIDER
            or (self.static.metrics is not None and self.static.metrics.add_internals)
        )
        stats = REGISTRY.route(qualified, service_name) if counted else None
        if isinstance(service, SERVICE_TYPES):
            return RouteTarget(qualified, service, None, 0.0, compiled, stats)
        return RouteTarget(qualified, None, service, 0.0, compiled, stats)  # type: ignore[arg-type]

    def _flatten(self, qualified: str, into: list[Handler], depth: int) -> bool:
        """Append the handlers a middleware stands for (a chain: its members, in order)."""
        config = self.middleware_configs.get(qualified)
        if config is None or depth > 32:
            return False  # unknown member or cycle: reported by _check_chains
        if config.chain is not None:
            provider = qualified.rpartition("@")[2]
            return all(
                self._flatten(qualify(member, provider), into, depth + 1)
                for member in config.chain.middlewares
            )
        built = self.handlers.get(qualified)
        if built is None:
            return False
        into.append(built[1])
        return True

    def _middleware(
        self,
        name: str,
        config: Middleware,
        registry: dict[str, Builder],
        services: dict[str, HttpService | Callable[[Exchange], None]],
    ) -> tuple[bytes, Handler] | None:
        """Build one middleware; None when refused (the issue is recorded) or a chain."""
        path = f"http.middlewares.{name}"
        kinds = set_fields(config)
        if len(kinds) != 1:
            found = f"; found {', '.join(e for _, e in kinds)}" if kinds else ""
            self.issue(path, f"a middleware needs exactly one type{found}")
            return None
        attr, encoded = kinds[0]
        if attr == "chain":
            return None  # flattened into each router's chain
        builder = registry.get(attr)
        if builder is None:
            self.issue(f"{path}.{encoded}", f"middleware {encoded!r} {UNSUPPORTED}")
            return None
        options = getattr(config, attr)
        qualified = qualify(name, self.provider)
        key = attr.encode() + msgspec.json.encode(options, enc_hook=float)
        previous = self.previous.handlers.get(qualified) if self.previous is not None else None
        if previous is not None and previous[0] == key:
            return previous
        context = BuildContext(self.provider, services, static=self.static, pools=self.pools)
        try:
            handler = builder(qualified, options, context)
        except BuildError as error:
            where = f"{path}.{encoded}" + (f".{error.key}" if error.key else "")
            self.issue(where, str(error))
            return None
        return key, handler

    def _rule_issue(self, router: str, message: str) -> None:
        """Attribute a table error to the provider that defined the router."""
        name, _, provider = router.rpartition("@")
        for config in self.configs:
            if config.provider == provider and name in config.dynamic.http.routers:
                self.issues.append(ConfigIssue(config.source, f"http.routers.{name}.rule", message))
                return
        self.issues.append(ConfigIssue("", f"http.routers.{router}.rule", message))

    def _warn_same_rule(
        self, same_rule: dict[tuple[str, int], list[tuple[str, str, frozenset[str]]]]
    ) -> None:
        """Two routers with one rule and one priority on one entry point: either may answer."""
        for (_, priority), routers in same_rule.items():
            if len(routers) < 2:
                continue
            for index, (qualified, source, on) in enumerate(routers[1:], 1):
                for first, _, first_on in routers[:index]:
                    if on & first_on:
                        name = qualified.rpartition("@")[0]
                        self.warnings.append(
                            ConfigIssue(
                                source,
                                f"http.routers.{name}.rule",
                                f"same rule and priority ({priority}) as router {first!r}; "
                                "which of the two answers is not defined",
                            )
                        )
                        break

    def _check_chains(self, dynamic: DynamicConfig, middlewares: dict[str, Middleware]) -> None:
        """Chain middlewares must name existing middlewares and must not loop."""
        for name, middleware in dynamic.http.middlewares.items():
            if middleware.chain is None:
                continue
            path = f"http.middlewares.{name}.chain.middlewares"
            for index, member in enumerate(middleware.chain.middlewares):
                if qualify(member, self.provider) not in middlewares:
                    self.issue(f"{path}[{index}]", f"unknown middleware {member!r}")
            cycle = _chain_cycle(qualify(name, self.provider), middlewares)
            if cycle:
                self.issue(path, "chain cycle: " + " -> ".join(cycle))

    def _load_balancer(
        self,
        name: str,
        config: ServersLoadBalancer,
        transports: dict[str, ServersTransport],
        path: str,
    ) -> tuple[LoadBalancer, float, bytes] | None:
        path = f"{path}.loadBalancer"
        transport = self.static.servers_transport
        if config.servers_transport:
            found = transports.get(qualify(config.servers_transport, self.provider))
            if found is None:
                self.issue(
                    f"{path}.serversTransport",
                    f"unknown serversTransport {config.servers_transport!r}",
                )
                return None
            transport = found
        servers: list[Server] = []
        ok = True
        for index, server in enumerate(config.servers):
            server_path = f"{path}.servers[{index}]"
            parsed = self._server_url(server.url, f"{server_path}.url")
            if parsed is None:
                ok = False
                continue
            scheme, host, port, host_header = parsed
            weight = 1 if server.weight is None else server.weight
            if weight < 0:
                self.issue(f"{server_path}.weight", "weight must not be negative")
                ok = False
                continue
            pool = self.pools.get(scheme, host, port, transport) if self.pools else None
            servers.append(Server(server.url, pool, host_header, weight))
        health = None
        if config.health_check is not None:
            try:
                health = compile_health_check(config.health_check, transport)
            except HealthCheckError as error:
                self.issue(f"{path}.healthCheck.{error.key}", str(error))
                ok = False
        passive = None
        if config.passive_health_check is not None:
            try:
                passive = compile_passive(config.passive_health_check, health is not None)
            except HealthCheckError as error:
                self.issue(f"{path}.passiveHealthCheck.{error.key}", str(error))
                ok = False
        if not ok:
            return None
        balancer = LoadBalancer(
            qualify(name, self.provider), servers, config.pass_host_header, health, passive
        )
        key = msgspec.json.encode((config, transport), enc_hook=float)
        return balancer, float(transport.forwarding_timeouts.response_header_timeout), key

    def _server_url(self, url: str, path: str) -> tuple[str, str, int, bytes] | None:
        if not url:
            self.issue(path, "a server needs a url")
            return None
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            self.issue(path, f"invalid url {url!r}: {exc}")
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            message = (
                f"scheme {parts.scheme!r} {UNSUPPORTED}"
                if scheme == "h2c"
                else (f"invalid url {url!r}: scheme must be http or https")
            )
            self.issue(path, message)
            return None
        if not parts.hostname:
            self.issue(path, f"invalid url {url!r}: no host")
            return None
        if parts.path not in ("", "/"):
            self.issue(path, f"a path in a server url {UNSUPPORTED} ({parts.path!r})")
            return None
        if port is None:
            port = 443 if scheme == "https" else 80
        return scheme, parts.hostname, port, parts.netloc.rsplit("@", 1)[-1].encode("idna")

    def _refuse_unsupported(self, dynamic: DynamicConfig) -> None:
        """Name every configured feature Turnout cannot honour yet, instead of ignoring it."""
        http = dynamic.http
        for name, router in http.routers.items():
            if router.tls is not None:
                self.issue(f"http.routers.{name}.tls", f"TLS termination {UNSUPPORTED}")
        for name, service in http.services.items():
            path = f"http.services.{name}"
            if service.highest_random_weight is not None:
                self.issue(
                    f"{path}.highestRandomWeight", f"highestRandomWeight services {UNSUPPORTED}"
                )
            if service.weighted is not None and service.weighted.sticky is not None:
                self.issue(f"{path}.weighted.sticky", f"sticky {UNSUPPORTED}")
            if service.failover is not None and service.failover.errors is not None:
                self.issue(f"{path}.failover.errors", f"failover on errors {UNSUPPORTED}")
            if service.middlewares:
                self.issue(f"{path}.middlewares", f"middlewares {UNSUPPORTED}")
            balancer = service.load_balancer
            if balancer is None:
                continue
            for key, value in (("sticky", balancer.sticky),):
                if value is not None:
                    self.issue(f"{path}.loadBalancer.{key}", f"{key} {UNSUPPORTED}")
            if balancer.strategy.lower() not in ("", "wrr"):
                self.issue(
                    f"{path}.loadBalancer.strategy", f"strategy {balancer.strategy!r} {UNSUPPORTED}"
                )
            for index, server in enumerate(balancer.servers):
                if server.preserve_path:
                    self.issue(
                        f"{path}.loadBalancer.servers[{index}].preservePath",
                        f"preservePath {UNSUPPORTED}",
                    )
        if dynamic.tls.certificates:
            self.issue("tls.certificates", f"TLS termination {UNSUPPORTED}")


def _checked(route: Route, check: Handler) -> Route:
    """``route`` on an entry point that checks every request first (encodedCharacters).

    As Traefik, the check runs once the router matched and before its
    middlewares: its 400 is the router's (access log, metrics), and the
    router's middlewares never see it.
    """
    target = route.payload
    assert isinstance(target, RouteTarget)
    handlers = target.chain.handlers if target.chain is not None else ()
    checked = replace(target, chain=CompiledChain((check, *handlers)))
    return Route(route.name, route.rule, route.priority, checked)


def _response_timeout(service: HttpService, timeouts: dict[str, float]) -> float:
    """responseHeaderTimeout of a route: the longest of the load balancers it may reach.

    0 (none) if any of them has none: a request must not be cut shorter than
    the transport of the server it ends on allows.
    """
    found = [timeouts.get(balancer.name, 0.0) for balancer in service.balancers()]
    return 0.0 if not found or 0.0 in found else max(found)


def _carry_health(old: LoadBalancer, new: LoadBalancer) -> None:
    """A changed service keeps what its unchanged health check knew of its servers.

    An autoscaled fleet changes its server list all the time: without this,
    every change would send traffic to a dead server again until it is probed.
    """
    if old.health is None or old.health != new.health:
        return
    known = {server.url: server for server in old.members}
    changed = False
    for server in new.members:
        before = known.get(server.url)
        if before is not None and not before.up:
            server.up, server.reason = False, before.reason
            changed = True
    if changed:
        new.rebuild()


def _chain_cycle(start: str, middlewares: dict[str, Middleware]) -> list[str]:
    """The loop ``start -> ... -> start`` through chain members, or [] if none."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, trail = stack.pop()
        middleware = middlewares.get(name)
        if middleware is None or middleware.chain is None:
            continue
        provider = name.rpartition("@")[2]
        for member in middleware.chain.middlewares:
            member = qualify(member, provider)
            if member == start:
                return [*trail, member]
            if member not in seen:
                seen.add(member)
                stack.append((member, [*trail, member]))
    return []


def build_merged(
    configs: Sequence[ProviderConfig],
    static: StaticConfig,
    *,
    entrypoints: list[str],
    pools: PoolRegistry | None = None,
    previous: Snapshot | None = None,
) -> tuple[Snapshot, list[ConfigIssue]]:
    """Compile every provider's configuration into one snapshot.

    The issues list is empty when the snapshot may go live. With ``pools``
    None nothing is opened or dialled: that is the dry run (``turnout check``).
    ``previous`` (the live snapshot) lets unchanged balancers and tables carry over.
    """
    internal = internal_config(static)
    if internal is not None:
        # Traefik's internal provider: the routers of api@internal, ping@internal, ...
        configs = [*configs, ProviderConfig(INTERNAL_PROVIDER, internal, INTERNAL_PROVIDER)]
    builder = _Builder(configs, static, pools, previous)
    snapshot = builder.build(entrypoints)
    return snapshot, builder.issues


def build_snapshot(
    dynamic: DynamicConfig,
    static: StaticConfig,
    *,
    entrypoints: list[str],
    provider: str = "file",
    source: str = "",
    pools: PoolRegistry | None = None,
) -> tuple[Snapshot, list[ConfigIssue]]:
    """Compile one provider's configuration (see ``build_merged``)."""
    return build_merged(
        [ProviderConfig(provider, dynamic, source)], static, entrypoints=entrypoints, pools=pools
    )
