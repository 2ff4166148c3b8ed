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

import asyncio
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from proxy.config.dynamic import Middleware, Router, Service
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.runtime.snapshot import qualify

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
    return msgspec.structs.asdict(struct)  # shallow: nested Structs stay as they are


def _set_users(items: dict[str, Any], users: dict[str, list[str]]) -> None:
    """Fill in ``usedBy`` of the objects in ``items`` that ``users`` names."""
    for name, used_by in users.items():
        info = items.get(name)
        if info is not None:
            items[name] = msgspec.structs.replace(info, used_by=used_by)


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


# View attribute, configuration section, kind, Info type: the TCP and UDP lists.
_LAYER4: tuple[tuple[str, str, str, type[Any]], ...] = (
    ("tcp_routers", "tcp", "routers", TCPRouterInfo),
    ("tcp_services", "tcp", "services", TCPServiceInfo),
    ("tcp_middlewares", "tcp", "middlewares", TCPMiddlewareInfo),
    ("udp_routers", "udp", "routers", UDPRouterInfo),
    ("udp_services", "udp", "services", UDPServiceInfo),
)


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
    # Live user services by name (load balancers, weighted, failover...), for
    # serverStatus and in-flight counts.
    live_services: dict[str, Any]


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
        # (section, kind, qualified name) -> what to say about that object
        self.notes: dict[tuple[str, str, str], list[str]] = {}
        self.by_source = {config.source: config.provider for config in snapshot.providers}

    def note(self, key: tuple[str, str, str], message: str) -> None:
        self.notes.setdefault(key, []).append(message)

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

        # Who uses what, gathered first and set once: a middleware on every one
        # of 10,000 routers must not be copied 10,000 times.
        service_users: dict[str, list[str]] = {}
        middleware_users: dict[str, list[str]] = {}
        for name, router in routers.items():
            provider = provider_of(name)
            if router.service:
                service_users.setdefault(qualify(router.service, provider), []).append(name)
            for member in router.middlewares:
                middleware_users.setdefault(qualify(member, provider), []).append(name)
        _set_users(services, service_users)
        _set_users(middlewares, middleware_users)

        entrypoints = {
            name: EntryPointInfo(**_fields(config), name=name)
            for name, config in sorted(self.entrypoint_configs.items())
        }
        view = View(
            routers=dict(sorted(routers.items())),
            services=dict(sorted(services.items())),
            middlewares=dict(sorted(middlewares.items())),
            **self.layer4(),
            entrypoints=entrypoints,
            providers=self.provider_statuses(),
            overview=None,  # type: ignore[arg-type]
            live_services={
                name: service
                for name, service in snapshot.services.items()
                if not name.endswith("@internal")
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

    def _status(
        self, notes: list[str] | None, live: bool, name: str
    ) -> tuple[str, list[str] | None]:
        if live:
            if not notes:
                return ENABLED, None
            # A live object keeps serving its previous configuration.
            return WARNING, notes
        errors = list(notes or ())
        if not errors:
            errors = [NOT_APPLIED.format(provider=provider_of(name))]
        return DISABLED, errors

    def layer4(self) -> dict[str, dict[str, Any]]:
        """TCP and UDP objects of the live configurations, by ``View`` attribute.

        A live configuration has no issue: they are enabled, or warning when a
        refused update names them.
        """
        addresses = {
            name: config.address.lower() for name, config in self.entrypoint_configs.items()
        }
        defaults = {
            "tcp": [n for n, a in addresses.items() if n != "traefik" and "/udp" not in a],
            "udp": [n for n, a in addresses.items() if "/udp" in a],
        }
        found: dict[str, dict[str, Any]] = {attribute: {} for attribute, *_ in _LAYER4}
        for config in self.snapshot.providers:
            for attribute, section, kind, info_type in _LAYER4:
                for raw, item in getattr(getattr(config.dynamic, section), kind).items():
                    name = qualify(raw, config.provider)
                    extra: dict[str, Any] = {}
                    if kind == "routers":
                        extra["using"] = list(item.entry_points or defaults[section]) or None
                    elif kind == "services":
                        extra["type"] = service_type(item)
                    else:
                        extra["type"] = middleware_type(item)
                    status, errors = self._l4_status((section, kind, name))
                    found[attribute][name] = info_type(
                        **_fields(item),
                        error=errors,
                        status=status,
                        name=name,
                        provider=config.provider,
                        **extra,
                    )
        for routers, services in (
            (found["tcp_routers"], found["tcp_services"]),
            (found["udp_routers"], found["udp_services"]),
        ):
            users: dict[str, list[str]] = {}
            for name, router in routers.items():
                if router.service:
                    users.setdefault(qualify(router.service, provider_of(name)), []).append(name)
            _set_users(services, users)
        return {attribute: dict(sorted(items.items())) for attribute, items in found.items()}

    def _l4_status(self, key: tuple[str, str, str]) -> tuple[str, list[str] | None]:
        notes = self.notes.get(key)
        return (WARNING, notes) if notes else (ENABLED, None)

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


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Keys are (objects compared by identity, values compared by equality)."""
    return (
        len(a) == 2
        and len(b) == 2
        and len(a[0]) == len(b[0])
        and all(x is y for x, y in zip(a[0], b[0], strict=True))
        and a[1] == b[1]
    )


class ViewCache:
    """The view of the live snapshot, rebuilt off the loop when the snapshot or a
    provider's state changed.

    A view of 10,000 routers takes about 0.2 s to build: on a worker thread the
    loop keeps serving meanwhile (it gets the interpreter back every few
    milliseconds), and the API requests that asked wait for it together.
    """

    __slots__ = ("_building", "_executor", "_key", "_view")

    def __init__(self) -> None:
        self._key: tuple[Any, ...] = ()
        self._view: View | None = None
        self._building: tuple[tuple[Any, ...], asyncio.Future[View]] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def get(
        self,
        snapshot: Snapshot,
        aggregator: Aggregator | None,
        static: StaticConfig,
        entrypoints: Mapping[str, EntryPointConfig],
    ) -> asyncio.Future[View]:
        """A future of the current view: already done when nothing changed."""
        states = list(aggregator.providers.values()) if aggregator is not None else []
        # Objects by identity (a new snapshot, refusal or candidate is a new
        # object; the key holds them, so an id is never reused while compared),
        # counters by value.
        key = (
            (snapshot, *(o for s in states for o in (s.last_error, s.pending))),
            tuple((s.unreachable, s.updates, s.accepted_at) for s in states),
        )
        loop = asyncio.get_running_loop()
        if self._view is not None and _same(key, self._key):
            done: asyncio.Future[View] = loop.create_future()
            done.set_result(self._view)
            return done
        if self._building is not None and _same(key, self._building[0]):
            return self._building[1]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="turnout-api-view")
        future = asyncio.wrap_future(
            self._executor.submit(build_view, snapshot, aggregator, static, entrypoints),
            loop=loop,
        )
        self._building = (key, future)

        def built(future: asyncio.Future[View]) -> None:
            if self._building is not None and self._building[1] is future:
                self._building = None
                if not future.cancelled() and future.exception() is None:
                    self._view, self._key = future.result(), key

        future.add_done_callback(built)
        return future
