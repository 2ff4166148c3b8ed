"""The consulCatalog provider: routing from the tags of the services in Consul's catalog.

Options (Traefik v3 names): ``endpoint.{address, scheme, datacenter, token,
httpAuth, tls, endpointWaitTime}``, ``prefix`` (default ``traefik``),
``exposedByDefault`` (default true), ``defaultRule`` (default
``Host(`{{ normalize .Name }}`)``), ``constraints``, ``stale``,
``requireConsistent``, ``cache``.

Theory of operation
-------------------
The catalog is followed with Consul's blocking queries: one on
``/v1/catalog/services`` (which services exist, with their tags), and one per
exposed service on ``/v1/health/service/NAME?passing``, so only instances
whose every check passes become servers. Each query carries the last
``X-Consul-Index`` (``?index=N&wait=...``) and returns when something changed
or the wait ran out; an index that goes backwards is reset, as Consul's
documentation asks. Any answer that changes the picture rebuilds the whole
configuration and hands it on (the aggregator throttles bursts).

Per instance, as Traefik builds it: its tags under ``<prefix>.`` are labels
(``proxy.providers.labels``); without a service label the Consul service
becomes one service with the instance as its server
(``scheme://address:port``, from ``loadbalancer.server.{scheme,port}`` or the
instance); without a router label a router named after the service gets
``defaultRule``; a router without a service gets the only service.
Instances of one Consul service merge: their servers join. Where instances
disagree on a router's or service's definition (a rolling deploy changing
labels), the definition most instances carry wins and a warning is logged;
Traefik drops the resource instead, which takes the whole service down for
the length of the rollout.

Limits: ``defaultRule`` may use ``{{ normalize .Name }}`` and ``{{ .Name }}``
only; ``constraints`` may use ``Tag(`...`)`` and ``TagRegex(`...`)`` with
``&&``, ``||``, ``!`` and parentheses; Consul Connect and namespaces are not
supported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import re2

from proxy.config.dynamic import (
    DynamicConfig,
    HTTPConfiguration,
    Router,
    Server,
    ServersLoadBalancer,
    Service,
)
from proxy.config.load import ConfigError, ConfigIssue
from proxy.config.static import ConsulCatalogProvider as ConsulCatalogConfig
from proxy.providers import httpclient
from proxy.providers.base import Backoff, Provider, ProviderUnavailable, Sink, client_ssl_context
from proxy.providers.labels import neutral_labels, normalize, parse_labels
from proxy.rules.parser import MatcherDef, Node, Parser, RuleError

log = logging.getLogger("turnout")

_TEMPLATE_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


# -- defaultRule and constraints ------------------------------------------------------


def default_rule_renderer(template: str, source: str) -> Callable[[str], str]:
    """``Host(`{{ normalize .Name }}`)`` -> a function of the service name (or ConfigError)."""
    pieces: list[str | Callable[[str], str]] = []
    position = 0
    for match in _TEMPLATE_ACTION.finditer(template):
        pieces.append(template[position : match.start()])
        action = " ".join(match.group(1).split())
        if action == "normalize .Name":
            pieces.append(normalize)
        elif action == ".Name":
            pieces.append(lambda name: name)
        else:
            raise ConfigError(
                [
                    ConfigIssue(
                        source,
                        "providers.consulCatalog.defaultRule",
                        f"template action {{{{ {action} }}}} is not supported by Turnout; "
                        "use {{ normalize .Name }} or {{ .Name }}",
                    )
                ]
            )
        position = match.end()
    pieces.append(template[position:])
    if "{{" in template[position:]:
        raise ConfigError(
            [ConfigIssue(source, "providers.consulCatalog.defaultRule", "unclosed {{ in template")]
        )

    def render(name: str) -> str:
        return "".join(piece if isinstance(piece, str) else piece(name) for piece in pieces)

    return render


def _tag(args: tuple[str, ...]) -> Callable[[frozenset[str]], bool]:
    wanted = args[0]
    return lambda tags: wanted in tags


def _tag_regex(args: tuple[str, ...]) -> Callable[[frozenset[str]], bool]:
    try:
        pattern = re2.compile(args[0])
    except re2.error as error:
        raise ValueError(f"invalid regexp {args[0]!r}: {error}") from None
    return lambda tags: any(pattern.fullmatch(tag) for tag in tags)


CONSTRAINT_MATCHERS = {"Tag": MatcherDef((1,), _tag), "TagRegex": MatcherDef((1,), _tag_regex)}
_CONSTRAINTS = Parser(CONSTRAINT_MATCHERS)


def constraint_matcher(expression: str, source: str) -> Callable[[frozenset[str]], bool]:
    """Traefik's constraints, limited to tag matching; ConfigError names the option."""
    if not expression.strip():
        return lambda tags: True
    from proxy.rules.matcher import compile_node

    try:
        node: Node = _CONSTRAINTS.parse(expression)
        return compile_node(node, CONSTRAINT_MATCHERS)  # type: ignore[return-value]
    except RuleError as error:
        message = str(error).replace("rule: ", "", 1)
        raise ConfigError(
            [ConfigIssue(source, "providers.consulCatalog.constraints", message)]
        ) from None


# -- the catalog, as the provider sees it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    node: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...]


@dataclass(slots=True)
class _Watched:
    index: int = 0
    instances: list[Instance] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def build_configuration(
    services: dict[str, list[Instance]],
    *,
    prefix: str,
    exposed_by_default: bool,
    default_rule: Callable[[str], str],
    constraints: Callable[[frozenset[str]], bool],
    source: str,
) -> DynamicConfig:
    """Healthy instances by Consul service name -> one dynamic configuration (ConfigError)."""
    routers: dict[str, list[tuple[Router, str]]] = {}
    balancers: dict[str, list[tuple[Service, list[Server], str]]] = {}
    others: list[DynamicConfig] = []
    issues: list[ConfigIssue] = []
    for consul_name in sorted(services):
        for instance in sorted(services[consul_name], key=lambda i: (i.node, i.id)):
            where = f"{source} service {consul_name!r} instance {instance.id!r}"
            if not constraints(frozenset(instance.tags)):
                continue
            labels = neutral_labels(list(instance.tags), prefix)
            try:
                parsed = parse_labels(labels, where)
            except ConfigError as error:
                issues.extend(error.issues)
                continue
            enabled = exposed_by_default if parsed.enable is None else parsed.enable
            if not enabled:
                continue
            http = parsed.dynamic.http
            tcp_or_udp = bool(
                parsed.dynamic.tcp.routers
                or parsed.dynamic.tcp.services
                or parsed.dynamic.udp.routers
                or parsed.dynamic.udp.services
            )
            others.append(parsed.dynamic)
            if tcp_or_udp and not (http.routers or http.services or http.middlewares):
                continue  # a TCP/UDP-only service (refused later as not supported yet)
            name = normalize(consul_name)
            service_map = dict(http.services) or {
                name: Service(load_balancer=ServersLoadBalancer())
            }
            for service_name, service in service_map.items():
                balancer = service.load_balancer
                if balancer is None:
                    issues.append(
                        ConfigIssue(where, f"http.services.{service_name}", "needs a loadBalancer")
                    )
                    continue
                port = parsed.server_ports.get(("http", service_name)) or str(instance.port)
                scheme = parsed.server_schemes.get(("http", service_name)) or "http"
                host = f"[{instance.address}]" if ":" in instance.address else instance.address
                first = balancer.servers[0] if balancer.servers else Server()
                server = msgspec.structs.replace(first, url=f"{scheme}://{host}:{port}")
                bare = msgspec.structs.replace(
                    service, load_balancer=msgspec.structs.replace(balancer, servers=[])
                )
                balancers.setdefault(service_name, []).append((bare, [server], instance.id))
            router_map = dict(http.routers)
            if not router_map and len(service_map) <= 1:
                router_map = {name: Router()}
            for router_name, router in router_map.items():
                if not router.rule:
                    router = msgspec.structs.replace(router, rule=default_rule(consul_name))
                if not router.service:
                    if len(service_map) > 1:
                        issues.append(
                            ConfigIssue(
                                where,
                                f"http.routers.{router_name}.service",
                                "cannot be linked automatically with several services: "
                                + ", ".join(sorted(service_map)),
                            )
                        )
                        continue
                    router = msgspec.structs.replace(router, service=next(iter(service_map)))
                routers.setdefault(router_name, []).append((router, instance.id))
    if issues:
        raise ConfigError(issues)
    return DynamicConfig(
        http=HTTPConfiguration(
            routers={name: _majority(name, "router", c) for name, c in routers.items()},
            services={name: _merge_service(name, c) for name, c in balancers.items()},
            middlewares=_union(o.http.middlewares for o in others),
            servers_transports=_union(o.http.servers_transports for o in others),
        ),
        tcp=msgspec.structs.replace(
            DynamicConfig().tcp,
            routers=_union(o.tcp.routers for o in others),
            services=_union(o.tcp.services for o in others),
        ),
        udp=msgspec.structs.replace(
            DynamicConfig().udp,
            routers=_union(o.udp.routers for o in others),
            services=_union(o.udp.services for o in others),
        ),
    )


def _majority(name: str, kind: str, candidates: list[tuple[Any, str]]) -> Any:
    counts = Counter(msgspec.json.encode(value, enc_hook=float) for value, _ in candidates)
    if len(counts) > 1:
        log.warning(
            "provider consulcatalog: instances disagree on %s %r; using the definition of the most "
            "instances",
            kind,
            name,
        )
    best, _ = counts.most_common(1)[0]
    for value, _ in candidates:
        if msgspec.json.encode(value, enc_hook=float) == best:
            return value
    raise AssertionError("unreachable")


def _merge_service(name: str, candidates: list[tuple[Service, list[Server], str]]) -> Service:
    bare = _majority(name, "service", [(service, iid) for service, _, iid in candidates])
    servers: list[Server] = []
    seen: set[str] = set()
    for _, instance_servers, _ in candidates:
        for server in instance_servers:
            if server.url not in seen:
                seen.add(server.url)
                servers.append(server)
    balancer = msgspec.structs.replace(bare.load_balancer, servers=servers)
    return msgspec.structs.replace(bare, load_balancer=balancer)


def _union(maps: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for resources in maps:
        for key, value in resources.items():
            merged.setdefault(key, value)
    return merged


# -- the provider -----------------------------------------------------------------------


class ConsulCatalogProvider(Provider):
    name = "consulcatalog"

    def __init__(self, config: ConsulCatalogConfig) -> None:
        self.config = config
        endpoint = config.endpoint
        address = endpoint.address or "127.0.0.1:8500"
        if "://" not in address:
            scheme = endpoint.scheme or ("https" if endpoint.tls is not None else "http")
            address = f"{scheme}://{address}"
        self.base = address.rstrip("/")
        self.source = f"consul {self.base}"
        self._ssl = client_ssl_context(endpoint.tls)
        self._headers: dict[str, str] = {}
        if endpoint.token:
            self._headers["X-Consul-Token"] = endpoint.token
        if endpoint.http_auth is not None:
            import base64

            credentials = f"{endpoint.http_auth.username}:{endpoint.http_auth.password}"
            self._headers["Authorization"] = (
                "Basic " + base64.b64encode(credentials.encode()).decode()
            )
        self._wait = float(endpoint.endpoint_wait_time)
        # Option errors surface when the provider first builds, like any configuration error.
        self._option_error: ConfigError | None = None
        try:
            self._default_rule = default_rule_renderer(config.default_rule, "static configuration")
            self._constraints = constraint_matcher(config.constraints, "static configuration")
        except ConfigError as error:
            self._option_error = error
        self._services: dict[str, _Watched] = {}
        self._sink: Sink | None = None
        self._last: bytes | None = None

    # -- the HTTP API -------------------------------------------------------------

    def _params(self, index: int | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.config.endpoint.datacenter:
            params["dc"] = self.config.endpoint.datacenter
        if self.config.stale:
            params["stale"] = ""
        if self.config.require_consistent:
            params["consistent"] = ""
        if self.config.cache:
            params["cached"] = ""
        if index:
            params["index"] = str(index)
            if self._wait > 0:
                params["wait"] = f"{self._wait:g}s"
        return params

    async def _query(self, path: str, index: int | None, extra: str = "") -> tuple[Any, int]:
        params = urlencode(self._params(index)).replace("=&", "&").rstrip("=")
        query = "&".join(part for part in (extra, params) if part)
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        # A blocking query answers within wait (Consul's default: 5 minutes) plus
        # up to wait/16 of jitter.
        wait = self._wait if self._wait > 0 else 300.0
        timeout = (wait * 17 / 16 + 10) if index else 10.0
        try:
            response = await httpclient.request(
                "GET", url, headers=self._headers, timeout=timeout, ssl_context=self._ssl
            )
        except (httpclient.HttpClientError, TimeoutError) as error:
            raise ProviderUnavailable(f"{self.base}{path}: {error or 'timed out'}") from None
        if response.status != 200:
            text = response.body[:200].decode(errors="replace")
            raise ProviderUnavailable(f"{self.base}{path}: {response.status} {text}")
        try:
            data = json.loads(response.body)
        except ValueError:
            raise ProviderUnavailable(f"{self.base}{path}: answer is not JSON") from None
        try:
            new_index = int(response.header("x-consul-index") or 0)
        except ValueError:
            new_index = 0
        return data, new_index

    async def _catalog(self, index: int | None) -> tuple[dict[str, list[str]], int]:
        data, new_index = await self._query("/v1/catalog/services", index)
        return {str(k): [str(t) for t in (v or [])] for k, v in (data or {}).items()}, new_index

    async def _healthy(self, name: str, index: int | None) -> tuple[list[Instance], int]:
        data, new_index = await self._query(
            f"/v1/health/service/{quote(name, safe='')}", index, extra="passing"
        )
        instances = []
        for entry in data or []:
            service = entry.get("Service") or {}
            node = entry.get("Node") or {}
            instances.append(
                Instance(
                    id=str(service.get("ID", "")),
                    node=str(node.get("Node", "")),
                    name=str(service.get("Service", name)),
                    address=str(service.get("Address") or node.get("Address") or ""),
                    port=int(service.get("Port") or 0),
                    tags=tuple(str(t) for t in service.get("Tags") or ()),
                )
            )
        return instances, new_index

    def _exposed(self, tags: list[str]) -> bool:
        """The service-level filter, on the union of the instances' tags (as Traefik does)."""
        lowered = {tag.lower() for tag in tags}
        enable_true = f"{self.config.prefix}.enable=true".lower()
        enable_false = f"{self.config.prefix}.enable=false".lower()
        if enable_false in lowered:
            return False
        if not self.config.exposed_by_default and enable_true not in lowered:
            return False
        return self._constraints(frozenset(tags))

    def _build(self, services: dict[str, list[Instance]]) -> DynamicConfig:
        if self._option_error is not None:
            raise self._option_error
        return build_configuration(
            services,
            prefix=self.config.prefix,
            exposed_by_default=self.config.exposed_by_default,
            default_rule=self._default_rule,
            constraints=self._constraints,
            source=self.source,
        )

    async def fetch(self) -> DynamicConfig:
        catalog, _ = await self._catalog(None)
        services = {}
        for name, tags in catalog.items():
            if self._exposed(tags):
                services[name], _ = await self._healthy(name, None)
        return self._build(services)

    # -- following ---------------------------------------------------------------------

    def _publish(self) -> None:
        assert self._sink is not None
        services = {name: watched.instances for name, watched in self._services.items()}
        try:
            update: DynamicConfig | ConfigError = self._build(services)
        except ConfigError as error:
            update = error
        if isinstance(update, DynamicConfig):
            encoded = msgspec.json.encode(update, enc_hook=float)
            if encoded == self._last:
                return
            self._last = encoded
        else:
            self._last = None
        self._sink.submit(self.name, update)

    async def watch(self, sink: Sink) -> None:
        self._sink = sink
        backoff = Backoff()
        index = 0
        try:
            while True:
                try:
                    catalog, new_index = await self._catalog(index or None)
                except ProviderUnavailable as error:
                    sink.unreachable(self.name, f"cannot read {self.source}: {error}")
                    index = 0  # Consul may have restarted with other indexes: start over
                    await asyncio.sleep(backoff.next())
                    continue
                sink.unreachable(self.name, None)
                backoff.reset()
                index = _next_index(index, new_index)
                wanted = {name for name, tags in catalog.items() if self._exposed(tags)}
                changed = False
                for name in list(self._services):
                    if name not in wanted:
                        watched = self._services.pop(name)
                        if watched.task is not None:
                            watched.task.cancel()
                        changed = True
                new = [name for name in wanted if name not in self._services]
                if new:
                    # First answers of new services before publishing, so a new
                    # service appears with its instances in one update.
                    results = await asyncio.gather(
                        *(self._healthy(name, None) for name in new), return_exceptions=True
                    )
                    for name, result in zip(new, results, strict=True):
                        watched = self._services[name] = _Watched()
                        if not isinstance(result, BaseException):
                            watched.instances, watched.index = result[0], max(result[1], 1)
                        watched.task = asyncio.create_task(
                            self._follow_service(name, watched), name=f"consul-{name}"
                        )
                    changed = True
                if changed or self._last is None:
                    self._publish()
        finally:
            for watched in self._services.values():
                if watched.task is not None:
                    watched.task.cancel()
            self._services.clear()

    async def _follow_service(self, name: str, watched: _Watched) -> None:
        backoff = Backoff()
        while True:
            try:
                instances, new_index = await self._healthy(name, watched.index or None)
            except ProviderUnavailable:
                watched.index = 0
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            watched.index = _next_index(watched.index, new_index)
            if instances != watched.instances:
                watched.instances = instances
                self._publish()


def _next_index(old: int, new: int) -> int:
    """Consul's rules for a blocking query's next index."""
    if new < old:
        return 0  # went backwards (a restored snapshot, a new leader): start over
    return max(new, 1)
