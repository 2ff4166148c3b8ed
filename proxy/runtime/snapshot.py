"""A snapshot: one complete dynamic configuration, validated and compiled for the hot path.

``build_snapshot`` turns a ``DynamicConfig`` into router tables (one per entry
point), load balancers and backend pools. It never raises on bad
configuration: it returns every problem as a ``ConfigIssue``, and a caller
that gets any issue keeps the snapshot it has. A request holds a reference to
the snapshot it started on, so swapping one in is a single assignment.

Names are qualified as Traefik qualifies them: ``NAME@provider``; a reference
without ``@`` means the same provider; ``@internal`` names Turnout's built-in
services.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from proxy.config.dynamic import DynamicConfig, ServersLoadBalancer
from proxy.config.load import ConfigIssue
from proxy.config.static import ServersTransport, StaticConfig
from proxy.http.upstream import ServerPool
from proxy.rules import Route, RouterTable, build_table
from proxy.services.loadbalancer import LoadBalancer, Server
from proxy.services.whoami import whoami

if TYPE_CHECKING:
    import asyncio

    from proxy.http.exchange import Exchange
    from proxy.http.resolver import Resolver

INTERNAL_SERVICES: dict[str, Callable[[Exchange], None]] = {"whoami@internal": whoami}

UNSUPPORTED = "is not supported by Turnout yet"


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """What a matched router leads to."""

    router: str
    service: LoadBalancer | None
    internal: Callable[[Exchange], None] | None
    response_timeout: float


@dataclass(slots=True)
class Snapshot:
    tables: dict[str, RouterTable]
    services: dict[str, LoadBalancer | Callable[[Exchange], None]]
    routers: dict[str, RouteTarget]
    rules: dict[str, str] = field(default_factory=dict)

    @property
    def user_services(self) -> int:
        return sum(1 for name in self.services if not name.endswith("@internal"))

    def route(self, entrypoint: str, request: Exchange) -> RouteTarget | None:
        table = self.tables.get(entrypoint)
        if table is None:
            return None
        return table.match(request)  # type: ignore[return-value]


class PoolRegistry:
    """Backend pools by address and transport, kept across snapshots.

    A server that appears in the next snapshot unchanged keeps its pooled
    keep-alive connections.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, resolver: Resolver) -> None:
        self.loop = loop
        self.resolver = resolver
        self.pools: dict[tuple[Any, ...], ServerPool] = {}

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
                ssl=_client_tls(transport, host) if scheme == "https" else None,
            )
            self.pools[key] = pool
        return pool

    def all(self) -> Iterator[ServerPool]:
        return iter(self.pools.values())

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


def _client_tls(transport: ServersTransport, host: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in transport.root_cas:
        context.load_verify_locations(cafile=ca)
    if transport.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def qualify(name: str, provider: str) -> str:
    return name if "@" in name else f"{name}@{provider}"


class _Builder:
    def __init__(
        self,
        dynamic: DynamicConfig,
        static: StaticConfig,
        provider: str,
        source: str,
        pools: PoolRegistry | None,
    ) -> None:
        self.dynamic = dynamic
        self.static = static
        self.provider = provider
        self.source = source
        self.pools = pools
        self.issues: list[ConfigIssue] = []

    def issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, path, message))

    def build(self, entrypoints: list[str]) -> Snapshot:
        http = self.dynamic.http
        self._refuse_unsupported()
        transports = {
            qualify(name, self.provider): transport
            for name, transport in http.servers_transports.items()
        }
        services: dict[str, LoadBalancer | Callable[[Exchange], None]] = dict(INTERNAL_SERVICES)
        timeouts: dict[str, float] = {}
        for name, service in http.services.items():
            path = f"http.services.{name}"
            if service.load_balancer is None:
                if not any(
                    (
                        service.weighted,
                        service.mirroring,
                        service.failover,
                        service.highest_random_weight,
                    )
                ):
                    self.issue(
                        path,
                        "a service needs one of loadBalancer, weighted, "
                        "mirroring, failover, highestRandomWeight",
                    )
                continue
            built = self._load_balancer(name, service.load_balancer, transports, path)
            if built is not None:
                qualified = qualify(name, self.provider)
                services[qualified] = built[0]
                timeouts[qualified] = built[1]

        routes: dict[str, list[Route]] = {name: [] for name in entrypoints}
        targets: dict[str, RouteTarget] = {}
        rules: dict[str, str] = {}
        for name, router in http.routers.items():
            path = f"http.routers.{name}"
            qualified = qualify(name, self.provider)
            if not router.rule:
                self.issue(f"{path}.rule", "a router needs a rule")
                continue
            if router.rule_syntax and router.rule_syntax != "v3":
                self.issue(
                    f"{path}.ruleSyntax",
                    f"rule syntax {router.rule_syntax!r} {UNSUPPORTED}; "
                    "write the rule in v3 syntax",
                )
                continue
            if not router.service:
                self.issue(f"{path}.service", "a router needs a service")
                continue
            service_name = qualify(router.service, self.provider)
            service = services.get(service_name)
            if service is None:
                if service_name in (qualify(n, self.provider) for n in http.services):
                    continue  # the service itself was refused and reported
                self.issue(f"{path}.service", f"unknown service {router.service!r}")
                continue
            for index, middleware in enumerate(router.middlewares):
                if qualify(middleware, self.provider) not in (
                    qualify(n, self.provider) for n in http.middlewares
                ):
                    self.issue(f"{path}.middlewares[{index}]", f"unknown middleware {middleware!r}")
            if isinstance(service, LoadBalancer):
                target = RouteTarget(qualified, service, None, timeouts.get(service_name, 0.0))
            else:
                target = RouteTarget(qualified, None, service, 0.0)
            targets[qualified] = target
            rules[qualified] = router.rule
            names = router.entry_points or entrypoints
            for index, entrypoint in enumerate(router.entry_points):
                if entrypoint not in routes:
                    self.issue(
                        f"{path}.entryPoints[{index}]", f"unknown entry point {entrypoint!r}"
                    )
            for entrypoint in names:
                if entrypoint in routes:
                    routes[entrypoint].append(
                        Route(qualified, router.rule, router.priority, target)
                    )

        tables: dict[str, RouterTable] = {}
        reported: set[str] = set()
        for entrypoint, entrypoint_routes in routes.items():
            table, errors = build_table(entrypoint_routes)
            tables[entrypoint] = table
            for error in errors:
                router_name = (error.router or "").rsplit("@", 1)[0]
                if router_name not in reported:
                    reported.add(router_name)
                    self.issue(f"http.routers.{router_name}.rule", str(error))
        return Snapshot(tables=tables, services=services, routers=targets, rules=rules)

    def _load_balancer(
        self,
        name: str,
        config: ServersLoadBalancer,
        transports: dict[str, ServersTransport],
        path: str,
    ) -> tuple[LoadBalancer, float] | None:
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
            servers.append(Server(server.url, pool, host_header, weight))  # type: ignore[arg-type]
        if not ok:
            return None
        balancer = LoadBalancer(qualify(name, self.provider), servers, config.pass_host_header)
        return balancer, float(transport.forwarding_timeouts.response_header_timeout)

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

    def _refuse_unsupported(self) -> None:
        """Name every configured feature Turnout cannot honour yet, instead of ignoring it."""
        dynamic = self.dynamic
        http = dynamic.http
        for name in http.middlewares:
            self.issue(f"http.middlewares.{name}", f"middlewares {UNSUPPORTED}")
        for name, router in http.routers.items():
            if router.tls is not None:
                self.issue(f"http.routers.{name}.tls", f"TLS termination {UNSUPPORTED}")
        for name, service in http.services.items():
            path = f"http.services.{name}"
            for key, value in (
                ("weighted", service.weighted),
                ("mirroring", service.mirroring),
                ("failover", service.failover),
                ("highestRandomWeight", service.highest_random_weight),
            ):
                if value is not None:
                    self.issue(f"{path}.{key}", f"{key} services {UNSUPPORTED}")
            if service.middlewares:
                self.issue(f"{path}.middlewares", f"middlewares {UNSUPPORTED}")
            balancer = service.load_balancer
            if balancer is None:
                continue
            for key, value in (
                ("sticky", balancer.sticky),
                ("healthCheck", balancer.health_check),
                ("passiveHealthCheck", balancer.passive_health_check),
            ):
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
        for section, config in (("tcp", dynamic.tcp), ("udp", dynamic.udp)):
            for kind in ("routers", "services"):
                for name in getattr(config, kind):
                    self.issue(
                        f"{section}.{kind}.{name}", f"{section.upper()} routing {UNSUPPORTED}"
                    )
        if dynamic.tls.certificates:
            self.issue("tls.certificates", f"TLS termination {UNSUPPORTED}")


def build_snapshot(
    dynamic: DynamicConfig,
    static: StaticConfig,
    *,
    entrypoints: list[str],
    provider: str = "file",
    source: str = "",
    pools: PoolRegistry | None = None,
) -> tuple[Snapshot, list[ConfigIssue]]:
    """Compile dynamic into a snapshot; the issues list is empty when it may go live.

    With ``pools`` None nothing is opened or dialled: that is the dry run
    (``turnout check``).
    """
    builder = _Builder(dynamic, static, provider, source, pools)
    snapshot = builder.build(entrypoints)
    return snapshot, builder.issues
