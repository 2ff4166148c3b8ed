"""The API's picture of a snapshot: every object with its status, errors, provider and users.

Built once per live snapshot and set of refusals (``ViewCache``), off the
request path, on the first API request that needs it. What changes between
two snapshots without a rebuild (servers' health, requests in flight) is
filled in per response, on copies (``service_now``).

Statuses, as Traefik's: ``enabled``; ``warning`` (serving, with something to
look at: a build warning, or a refused update that names it while its previous
configuration stays live); ``disabled`` (not serving: it only exists in a
provider's refused update, shown with that update's errors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.api.model import (
    DISABLED,
    ENABLED,
    WARNING,
    EntryPointInfo,
    Features,
    Issue,
    MiddlewareInfo,
    Overview,
    ProviderStatus,
    Refusal,
    RouterInfo,
    SchemeOverview,
    Section,
    ServiceInfo,
    TCPMiddlewareInfo,
    TCPRouterInfo,
    TCPServiceInfo,
    UDPRouterInfo,
    UDPServiceInfo,
)
from proxy.config.dynamic import DynamicConfig, Middleware, Router, Service
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.runtime.snapshot import qualify
from proxy.services.loadbalancer import LoadBalancer

if TYPE_CHECKING:
    from proxy.config.load import ConfigIssue
    from proxy.config.static import StaticConfig
    from proxy.runtime.aggregator import Aggregator, ProviderState
    from proxy.runtime.snapshot import Snapshot

# http.routers.NAME..., tcp.services.NAME..., the object a configuration issue is about.
_OBJECT_PATH = re.compile(r"^(http|tcp|udp)\.(routers|services|middlewares)\.([^.\[]+)")
_LINE = re.compile(r"^line (\d+)$")

NOT_APPLIED = "not applied: the update of provider {provider} that holds it was refused"


def _fields(struct: msgspec.Struct) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}


def provider_of(name: str) -> str:
    return name.rpartition("@")[2]


def service_type(service: Any) -> str:
    """Traefik's ``type``: the lower-cased name of the kind that is set (``loadbalancer``)."""
    for attr, encoded in zip(
        type(service).__struct_fields__, type(service).__struct_encode_fields__, strict=True
    ):
        if attr != "middlewares" and getattr(service, attr) is not None:
            return encoded.lower()
    return ""


def middleware_type(middleware: Any) -> str:
    """``addprefix``, ``ratelimit``...; a plugin is typed by its plugin name, as in Traefik."""
    for attr, encoded in zip(
        type(middleware).__struct_fields__, type(middleware).__struct_encode_fields__, strict=True
    ):
        value = getattr(middleware, attr)
        if value is None:
            continue
        if attr == "plugin" and isinstance(value, dict) and len(value) == 1:
            return next(iter(value))
        return encoded.lower()
    return ""


@dataclass(slots=True)
class _Notes:
    """Errors found for one object, and whether any of them stops it from serving."""

    errors: list[str] = field(default_factory=list)
    refused: bool = False


@dataclass(slots=True)
class View:
    """Everything the API shows for one snapshot, sorted by name."""

    routers: dict[str, RouterInfo]
    services: dict[str, ServiceInfo]
    middlewares: dict[str, MiddlewareInfo]
    tcp_routers: dict[str, TCPRouterInfo]
    tcp_services: dict[str, TCPServiceInfo]
    tcp_middlewares: dict[str, TCPMiddlewareInfo]
    udp_routers: dict[str, UDPRouterInfo]
    udp_services: dict[str, UDPServiceInfo]
    entrypoints: dict[str, EntryPointInfo]
    providers: list[ProviderStatus]
    overview: Overview
    # Live load balancers by service name, for serverStatus and in-flight counts.
    balancers: dict[str, LoadBalancer]


def _status(notes: _Notes | None) -> tuple[str, list[str] | None]:
    if notes is None or not notes.errors:
        return ENABLED, None
    return (DISABLED if notes.refused else WARNING), notes.errors


def _issue(issue: ConfigIssue) -> Issue:
    line = issue.line
    match = _LINE.match(issue.path)
    if line is None and match:
        line = int(match.group(1))
    return Issue(issue.file, issue.path, line, issue.message)


def _section(items: Iterable[Any]) -> Section:
    section = Section()
    for item in items:
        section.total += 1
        if item.status == DISABLED:
            section.errors += 1
        elif item.status == WARNING:
            section.warnings += 1
    return section


# Traefik names providers and metrics backends by their Go field names.
_GO_NAMES = {"http": "HTTP", "ecs": "ECS", "statsd": "StatsD", "influxdb2": "InfluxDB2"}


def _go_name(encoded: str) -> str:
    return _GO_NAMES.get(encoded.lower(), encoded[:1].upper() + encoded[1:])


def _set_names(struct: Any) -> list[str]:
    if struct is None:
        return []
    names = []
    for attr, encoded in zip(
        type(struct).__struct_fields__, type(struct).__struct_encode_fields__, strict=True
    ):
        value = getattr(struct, attr)
        if isinstance(value, msgspec.Struct):
            names.append(_go_name(encoded))
        elif isinstance(value, dict) and attr == "plugin":
            names.extend(f"plugin-{name}" for name in value)
    return names


class _Builder:
    def __init__(
        self,
        snapshot: Snapshot,
        states: Iterable[ProviderState],
        static: StaticConfig,
        entrypoints: Mapping[str, EntryPointConfig],
    ) -> None:
        self.snapshot = snapshot
        self.states = list(states)
        self.static = static
        self.entrypoint_configs = entrypoints
        self.notes: dict[tuple[str, str, str], _Notes] = {}
        self.by_source = {config.source: config.provider for config in snapshot.providers}

    def note(self, key: tuple[str, str, str], message: str, *, refused: bool = False) -> None:
        notes = self.notes.setdefault(key, _Notes())
        notes.errors.append(message)
        notes.refused = notes.refused or refused

    def collect_notes(self) -> None:
        for warning in self.snapshot.warnings:
            match = _OBJECT_PATH.match(warning.path)
            provider = self.by_source.get(warning.file)
            if match and provider:
                section, kind, name = match.groups()
                self.note((section, kind, qualify(name, provider)), warning.message)
        for state in self.states:
            if state.last_error is None:
                continue
            for issue in state.last_error.issues:
                match = _OBJECT_PATH.match(issue.path)
                if match:
                    section, kind, name = match.groups()
                    where = issue.path[len(match.group(0)) :].lstrip(".")
                    text = f"{where}: {issue.message}" if where else issue.message
                    self.note(
                        (section, kind, qualify(name, state.name)),
                        f"refused update: {text}",
                        refused=True,
                    )

    def build(self) -> View:
        self.collect_notes()
        snapshot = self.snapshot
        using: dict[str, list[str]] = {}
        for entrypoint, routes in snapshot.route_lists.items():
            for route in routes:
                using.setdefault(route.name, []).append(entrypoint)

        routers: dict[str, RouterInfo] = {}
        services: dict[str, ServiceInfo] = {}
        middlewares: dict[str, MiddlewareInfo] = {}
        for name, config in snapshot.router_configs.items():
            routers[name] = self.router(name, config, sorted(using.get(name, ())), live=True)
        for name, service in snapshot.service_configs.items():
            if name in snapshot.services:
                services[name] = self.service(name, service, live=True)
        for name in snapshot.services:
            if name.endswith("@internal"):
                services[name] = ServiceInfo(name=name, provider="internal", status=ENABLED)
        for name, middleware in snapshot.middlewares.items():
            middlewares[name] = self.middleware(name, middleware, live=True)

        # What only a refused update holds: shown disabled, with the update's errors.
        for state in self.states:
            if state.last_error is None or state.pending is None:
                continue
            http = state.pending.http
            for raw, router in http.routers.items():
                name = qualify(raw, state.name)
                if name not in routers:
                    routers[name] = self.router(name, router, None, live=False)
            for raw, service in http.services.items():
                name = qualify(raw, state.name)
                if name not in services:
                    services[name] = self.service(name, service, live=False)
            for raw, middleware in http.middlewares.items():
                name = qualify(raw, state.name)
                if name not in middlewares:
                    middlewares[name] = self.middleware(name, middleware, live=False)

        for name, router in routers.items():
            target = router.service
            if target:
                served = qualify(target, provider_of(name))
                if served in services:
                    info = services[served]
                    services[served] = msgspec.structs.replace(
                        info, used_by=[*(info.used_by or ()), name]
                    )
            for member in router.middlewares:
                qualified = qualify(member, provider_of(name))
                if qualified in middlewares:
                    info = middlewares[qualified]
                    middlewares[qualified] = msgspec.structs.replace(
                        info, used_by=[*(info.used_by or ()), name]
                    )

        tcp_routers, tcp_services, tcp_middlewares, udp_routers, udp_services = self.layer4()
        entrypoints = {
            name: EntryPointInfo(**_fields(config), name=name)
            for name, config in sorted(self.entrypoint_configs.items())
        }
        view = View(
            routers=dict(sorted(routers.items())),
            services=dict(sorted(services.items())),
            middlewares=dict(sorted(middlewares.items())),
            tcp_routers=tcp_routers,
            tcp_services=tcp_services,
            tcp_middlewares=tcp_middlewares,
            udp_routers=udp_routers,
            udp_services=udp_services,
            entrypoints=entrypoints,
            providers=self.provider_statuses(),
            overview=None,  # type: ignore[arg-type]
            balancers={
                name: service
                for name, service in snapshot.services.items()
                if isinstance(service, LoadBalancer)
            },
        )
        view.overview = Overview(
            http=SchemeOverview(
                routers=_section(view.routers.values()),
                services=_section(view.services.values()),
                middlewares=_section(view.middlewares.values()),
            ),
            tcp=SchemeOverview(
                routers=_section(view.tcp_routers.values()),
                services=_section(view.tcp_services.values()),
                middlewares=_section(view.tcp_middlewares.values()),
            ),
            udp=SchemeOverview(
                routers=_section(view.udp_routers.values()),
                services=_section(view.udp_services.values()),
            ),
            features=Features(
                tracing=(_set_names(self.static.tracing) or [""])[0],
                metrics=(_set_names(self.static.metrics) or [""])[0],
                access_log=self.static.access_log is not None,
            ),
            providers=_set_names(self.static.providers),
        )
        return view

    def router(self, name: str, config: Router, using: list[str] | None, *, live: bool) -> Any:
        notes = self.notes.get(("http", "routers", name))
        status, errors = self._status(notes, live, name)
        return RouterInfo(
            **_fields(config),
            error=errors,
            status=status,
            using=using or None,
            name=name,
            provider=provider_of(name),
        )

    def service(self, name: str, config: Service, *, live: bool) -> ServiceInfo:
        notes = self.notes.get(("http", "services", name))
        status, errors = self._status(notes, live, name)
        return ServiceInfo(
            **_fields(config),
            error=errors,
            status=status,
            name=name,
            provider=provider_of(name),
            type=service_type(config),
        )

    def middleware(self, name: str, config: Middleware, *, live: bool) -> MiddlewareInfo:
        notes = self.notes.get(("http", "middlewares", name))
        status, errors = self._status(notes, live, name)
        return MiddlewareInfo(
            **_fields(config),
            error=errors,
            status=status,
            name=name,
            provider=provider_of(name),
            type=middleware_type(config),
        )

    def _status(self, notes: _Notes | None, live: bool, name: str) -> tuple[str, list[str] | None]:
        if live:
            if notes is None or not notes.errors:
                return ENABLED, None
            # A live object keeps serving its previous configuration.
            return WARNING, notes.errors
        errors = list(notes.errors) if notes is not None else []
        if not errors:
            errors = [NOT_APPLIED.format(provider=provider_of(name))]
        return DISABLED, errors

    def layer4(
        self,
    ) -> tuple[
        dict[str, TCPRouterInfo],
        dict[str, TCPServiceInfo],
        dict[str, TCPMiddlewareInfo],
        dict[str, UDPRouterInfo],
        dict[str, UDPServiceInfo],
    ]:
        """TCP and UDP objects of the live configurations (all enabled: a live set has no issue)."""
        tcp_routers: dict[str, TCPRouterInfo] = {}
        tcp_services: dict[str, TCPServiceInfo] = {}
        tcp_middlewares: dict[str, TCPMiddlewareInfo] = {}
        udp_routers: dict[str, UDPRouterInfo] = {}
        udp_services: dict[str, UDPServiceInfo] = {}
        default_eps = [
            name
            for name, config in self.entrypoint_configs.items()
            if name != "traefik" and "/udp" not in config.address.lower()
        ]
        udp_eps = [n for n, c in self.entrypoint_configs.items() if "/udp" in c.address.lower()]
        for config in self.snapshot.providers:
            provider = config.provider
            dynamic: DynamicConfig = config.dynamic
            for raw, router in dynamic.tcp.routers.items():
                name = qualify(raw, provider)
                status, errors = self._l4_status(("tcp", "routers", name))
                tcp_routers[name] = TCPRouterInfo(
                    **_fields(router),
                    error=errors,
                    status=status,
                    using=list(router.entry_points or default_eps) or None,
                    name=name,
                    provider=provider,
                )
            for raw, service in dynamic.tcp.services.items():
                name = qualify(raw, provider)
                status, errors = self._l4_status(("tcp", "services", name))
                tcp_services[name] = TCPServiceInfo(
                    **_fields(service),
                    error=errors,
                    status=status,
                    name=name,
                    provider=provider,
                    type=service_type(service),
                )
            for raw, middleware in dynamic.tcp.middlewares.items():
                name = qualify(raw, provider)
                status, errors = self._l4_status(("tcp", "middlewares", name))
                tcp_middlewares[name] = TCPMiddlewareInfo(
                    **_fields(middleware),
                    error=errors,
                    status=status,
                    name=name,
                    provider=provider,
                    type=middleware_type(middleware),
                )
            for raw, router in dynamic.udp.routers.items():
                name = qualify(raw, provider)
                status, errors = self._l4_status(("udp", "routers", name))
                udp_routers[name] = UDPRouterInfo(
                    **_fields(router),
                    error=errors,
                    status=status,
                    using=list(router.entry_points or udp_eps) or None,
                    name=name,
                    provider=provider,
                )
            for raw, service in dynamic.udp.services.items():
                name = qualify(raw, provider)
                status, errors = self._l4_status(("udp", "services", name))
                udp_services[name] = UDPServiceInfo(
                    **_fields(service),
                    error=errors,
                    status=status,
                    name=name,
                    provider=provider,
                    type=service_type(service),
                )
        for routers, services in ((tcp_routers, tcp_services), (udp_routers, udp_services)):
            for name, router in routers.items():
                served = qualify(router.service, provider_of(name)) if router.service else ""
                if served in services:
                    info = services[served]
                    services[served] = msgspec.structs.replace(
                        info,
                        used_by=[*(info.used_by or ()), name],  # type: ignore[union-attr]
                    )
        return (
            dict(sorted(tcp_routers.items())),
            dict(sorted(tcp_services.items())),
            dict(sorted(tcp_middlewares.items())),
            dict(sorted(udp_routers.items())),
            dict(sorted(udp_services.items())),
        )

    def _l4_status(self, key: tuple[str, str, str]) -> tuple[str, list[str] | None]:
        notes = self.notes.get(key)
        if notes is None or not notes.errors:
            return ENABLED, None
        return WARNING, notes.errors

    def provider_statuses(self) -> list[ProviderStatus]:
        statuses = []
        for state in self.states:
            refusal = None
            if state.last_error is not None:
                refusal = Refusal(
                    state.last_error.time, [_issue(issue) for issue in state.last_error.issues]
                )
            statuses.append(
                ProviderStatus(
                    name=state.name,
                    source=state.source,
                    accepted_at=state.accepted_at,
                    updates=state.updates,
                    refusals=state.refusals,
                    unreachable=state.unreachable,
                    last_error=refusal,
                )
            )
        return statuses


def build_view(
    snapshot: Snapshot,
    aggregator: Aggregator | None,
    static: StaticConfig,
    entrypoints: Mapping[str, EntryPointConfig],
) -> View:
    states = aggregator.providers.values() if aggregator is not None else ()
    return _Builder(snapshot, states, static, entrypoints).build()


class ViewCache:
    """The view of the live snapshot, rebuilt when the snapshot or a provider's state changes."""

    __slots__ = ("_key", "_view")

    def __init__(self) -> None:
        self._key: tuple[Any, ...] = ()
        self._view: View | None = None

    def get(
        self,
        snapshot: Snapshot,
        aggregator: Aggregator | None,
        static: StaticConfig,
        entrypoints: Mapping[str, EntryPointConfig],
    ) -> View:
        states = aggregator.providers.values() if aggregator is not None else ()
        # Objects by identity (a new snapshot, refusal or candidate is a new
        # object; the key holds them, so an id is never reused while compared),
        # counters by value.
        objects = (snapshot, *(o for s in states for o in (s.last_error, s.pending)))
        values = tuple((s.unreachable, s.updates, s.accepted_at) for s in states)
        old = self._key
        if (
            self._view is None
            or len(old) != 2
            or len(old[0]) != len(objects)
            or any(a is not b for a, b in zip(old[0], objects, strict=True))
            or old[1] != values
        ):
            self._view = build_view(snapshot, aggregator, static, entrypoints)
            self._key = (objects, values)
        return self._view
