"""``api@internal`` and ``dashboard@internal``: Traefik's API and the dashboard page.

Endpoints (GET and HEAD, JSON, Traefik's paths, field names and query
parameters): ``/api/overview``, ``/api/entrypoints[/NAME]``,
``/api/http/{routers,services,middlewares}[/NAME]``,
``/api/tcp/{routers,services,middlewares}[/NAME]``,
``/api/udp/{routers,services}[/NAME]``, ``/api/rawdata``, ``/api/version``;
and Turnout's own ``/api/providers`` (each provider's state and its last
refused update with every error) and ``/api/traffic`` (request counters per
router from the metrics registry, which the dashboard turns into rates).

Lists take ``search`` (part of the name, or of the rule for routers, any
case), ``status`` (enabled | warning | disabled), ``serviceName`` and
``middlewareName`` (routers), ``provider`` (Turnout), ``page`` and ``per_page``
(default 100; the ``X-Next-Page`` header gives the next page, 1 after the
last), as Traefik's. An unknown name answers 404 with ``{"message": ...}``.

The objects come from a ``View`` built once per snapshot (``view.py``); a
response only filters, pages, fills in what moves (server health, requests
in flight) and encodes the result in one ``msgspec`` call.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec

from proxy import __version__
from proxy.api import pages
from proxy.api.model import (
    ENCODER,
    Message,
    RawData,
    ServiceInfo,
    Version,
)
from proxy.api.query import BadRequest, Query
from proxy.api.response import TEXT, send
from proxy.api.traffic import traffic
from proxy.api.view import View, ViewCache, provider_of
from proxy.http.server import HttpConnection
from proxy.runtime import debug
from proxy.runtime.internal import ENTRYPOINT, MAX_PRIORITY, InternalService, router
from proxy.services.loadbalancer import LoadBalancer

if TYPE_CHECKING:
    from proxy.config.dynamic import Router
    from proxy.config.static import StaticConfig
    from proxy.http.exchange import Exchange

UP = "UP"

_VIEWS = ViewCache()
log = logging.getLogger("turnout")


# -- what moves between snapshots ------------------------------------------------------


def server_states(balancer: LoadBalancer) -> tuple[dict[str, str], dict[str, str]]:
    """UP / DOWN per server URL (UP when no health check watches it), and why each DOWN is."""
    reasons = {
        server.url: server.reason for server in balancer.members if not server.up and server.reason
    }
    return balancer.server_states(), reasons


def in_flight(runtime: Any) -> dict[str, int]:
    """Requests a service is answering now, counted by walking the connections.

    Counting here, when the API is asked, keeps the request path free of it.
    """
    counts: dict[str, int] = {}
    if runtime is None:
        return counts
    for entrypoint in runtime.entrypoints.values():
        for conn in entrypoint.connections:
            if not isinstance(conn, HttpConnection):
                continue  # a PROXY header being read, a UDP session: no request
            exchange = conn.active
            if exchange is None or not exchange.service_called or exchange.route is None:
                continue
            service = exchange.route.service
            if service is not None:
                counts[service.name] = counts.get(service.name, 0) + 1
    return counts


class _Now:
    """Per response: server health and in-flight counts, computed once if needed."""

    __slots__ = ("_flight", "runtime", "view")

    def __init__(self, view: View, runtime: Any) -> None:
        self.view = view
        self.runtime = runtime
        self._flight: dict[str, int] | None = None

    def service(self, info: ServiceInfo) -> ServiceInfo:
        live = self.view.live_services.get(info.name)
        if live is None:
            return info
        if self._flight is None:
            self._flight = in_flight(self.runtime)
        if not isinstance(live, LoadBalancer):
            return msgspec.structs.replace(info, in_flight_requests=self._flight.get(info.name, 0))
        states, reasons = server_states(live)
        servers = info.load_balancer.servers if info.load_balancer is not None else ()
        # Every configured server (weight 0 ones too), as Traefik lists them.
        status = {server.url: states.get(server.url, UP) for server in servers}
        return msgspec.structs.replace(
            info,
            server_status=status,
            server_reasons=reasons or None,
            in_flight_requests=self._flight.get(info.name, 0),
        )


# -- endpoints ----------------------------------------------------------------------------


def _json(exchange: Exchange, status: int, value: Any, headers: bytes = b"") -> None:
    send(exchange, status, ENCODER.encode(value), headers=headers)


def _not_found(exchange: Exchange, what: str, name: str) -> None:
    _json(exchange, 404, Message(f"{what} not found: {name}"))


def _listing(
    exchange: Exchange,
    items: dict[str, Any],
    searched: Callable[[Any], tuple[str, ...]],
    now: Callable[[Any], Any] | None = None,
) -> None:
    try:
        query = Query(exchange.raw_query)
        kept = [item for item in items.values() if query.keep(item, *searched(item))]
        page, following = query.page_of(kept)
    except BadRequest as error:
        _json(exchange, 400, Message(str(error)))
        return
    if now is not None:
        page = [now(item) for item in page]
    _json(exchange, 200, page, b"X-Next-Page: %d\r\n" % following)


def _name_only(item: Any) -> tuple[str, ...]:
    return (item.name,)


def _rule_and_name(item: Any) -> tuple[str, ...]:
    return (item.rule, item.name)


# kind path -> (View attribute, singular for 404s, searched fields, moving parts)
_KINDS: dict[str, tuple[str, str, Callable[[Any], tuple[str, ...]], bool]] = {
    "http/routers": ("routers", "router", _rule_and_name, False),
    "http/services": ("services", "service", _name_only, True),
    "http/middlewares": ("middlewares", "middleware", _name_only, False),
    "tcp/routers": ("tcp_routers", "router", _rule_and_name, False),
    "tcp/services": ("tcp_services", "service", _name_only, False),
    "tcp/middlewares": ("tcp_middlewares", "middleware", _name_only, False),
    "udp/routers": ("udp_routers", "router", _name_only, False),
    "udp/services": ("udp_services", "service", _name_only, False),
}


def _api(exchange: Exchange, path: str, view: View, runtime: Any) -> None:
    rest = path[len("/api/") :]
    if rest == "overview":
        _json(exchange, 200, view.overview)
        return
    if rest == "rawdata":
        _rawdata(exchange, view, runtime)
        return
    if rest == "version":
        _json(exchange, 200, _version(runtime))
        return
    if rest == "providers":
        _json(exchange, 200, view.providers)
        return
    if rest == "traffic":
        _json(exchange, 200, traffic(runtime))
        return
    if rest == "entrypoints":
        _listing(exchange, view.entrypoints, _name_only)
        return
    if rest.startswith("entrypoints/"):
        name = unquote(rest[len("entrypoints/") :])
        found = view.entrypoints.get(name)
        if found is None:
            _not_found(exchange, "entry point", name)
        else:
            _json(exchange, 200, found)
        return
    section, _, name = rest.partition("/")
    kind, _, name = name.partition("/")
    entry = _KINDS.get(f"{section}/{kind}")
    if entry is None:
        _json(exchange, 404, Message(f"not found: {path}"))
        return
    attribute, singular, searched, moving = entry
    items: dict[str, Any] = getattr(view, attribute)
    now = _Now(view, runtime).service if moving else None
    if not name and not rest.endswith("/"):
        _listing(exchange, items, searched, now)
        return
    name = unquote(name)
    found = items.get(name)
    if found is None:
        _not_found(exchange, singular, name)
        return
    _json(exchange, 200, now(found) if now is not None else found)


def _answer(exchange: Exchange, path: str, future: asyncio.Future[View], runtime: Any) -> None:
    conn = exchange.conn
    if conn.transport is None or conn.active is not exchange or exchange.response_state != 0:
        return  # the client left while the view was being built
    error = None if future.cancelled() else future.exception()
    if future.cancelled() or error is not None:
        log.error("API: building the view failed: %r", error, exc_info=error)
        _json(exchange, 500, Message("the API could not read the configuration; see the log"))
        return
    _api(exchange, path, future.result(), runtime)


def _rawdata(exchange: Exchange, view: View, runtime: Any) -> None:
    now = _Now(view, runtime)
    _json(
        exchange,
        200,
        RawData(
            routers=view.routers or None,
            middlewares=view.middlewares or None,
            services={name: now.service(info) for name, info in view.services.items()} or None,
            tcp_routers=view.tcp_routers or None,
            tcp_middlewares=view.tcp_middlewares or None,
            tcp_services=view.tcp_services or None,
            udp_routers=view.udp_routers or None,
            udp_services=view.udp_services or None,
        ),
    )


def _version(runtime: Any) -> Version:
    started = runtime.started_at if runtime is not None else 0.0
    start = datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat()
    return Version(Version=__version__, Codename="turnout", startDate=start)


# -- the services --------------------------------------------------------------------------


def _allowed(exchange: Exchange) -> bool:
    if exchange.method in ("GET", "HEAD"):
        return True
    _json(exchange, 405, Message("method not allowed"), b"Allow: GET, HEAD\r\n")
    return False


def api(exchange: Exchange) -> None:
    """``api@internal``: the API, and the dashboard when ``api.dashboard`` (default true)."""
    path = exchange.path
    if not _allowed(exchange):
        return
    runtime = exchange.conn.entrypoint.runtime
    if path.startswith("/api/"):
        if runtime is None:
            _json(exchange, 503, Message("the API is not running"))
            return
        entrypoints = {name: e.config for name, e in runtime.entrypoints.items()}
        future = _VIEWS.get(exchange.snapshot, runtime.aggregator, runtime.static, entrypoints)
        if future.done():
            _answer(exchange, path, future, runtime)
        else:
            future.add_done_callback(lambda done: _answer(exchange, path, done, runtime))
        return
    config = runtime.static.api if runtime is not None else None
    if path.startswith("/debug/") and config is not None and config.debug:
        _debug(exchange, path, runtime)
        return
    dashboard_on = config is None or config.dashboard
    if dashboard_on and pages.serve(exchange, path):
        return
    _json(exchange, 404, Message(f"not found: {path}"))


def _debug(exchange: Exchange, path: str, runtime: Any) -> None:
    """``api.debug``: Traefik serves Go's expvar and pprof; Turnout its own resource counters.

    ``/debug/vars`` is what ``kill -USR1`` prints (descriptors, tasks, connections,
    upstream connections, memory), plus the garbage collector's counts.
    """
    if path != "/debug/vars":
        _json(exchange, 404, Message(f"not found: {path} (Turnout serves /debug/vars only)"))
        return
    values = debug.stats(runtime.entrypoints, runtime.pools)
    values["gc"] = gc.get_stats()
    send(exchange, 200, msgspec.json.encode(values))


def dashboard(exchange: Exchange) -> None:
    """``dashboard@internal``: the page, and ``/`` redirected to it (Traefik's insecure mode)."""
    if not _allowed(exchange):
        return
    if not pages.serve(exchange, exchange.path):
        send(exchange, 404, b"404 page not found\n", TEXT)


# -- registration ----------------------------------------------------------------------------


def _api_enabled(static: StaticConfig) -> bool:
    return static.api is not None


def _dashboard_enabled(static: StaticConfig) -> bool:
    return static.api is not None and static.api.dashboard


def _insecure(static: StaticConfig) -> bool:
    return static.api is not None and static.api.insecure


def _api_routers(static: StaticConfig) -> dict[str, Router]:
    """Traefik's routers for ``api.insecure``: /api, /debug with ``api.debug``, and, with
    the dashboard, everything else."""
    if not _insecure(static):
        return {}
    routers = {"api": router("PathPrefix(`/api`)", "api@internal", ENTRYPOINT, MAX_PRIORITY - 1)}
    if static.api is not None and static.api.debug:
        routers["debug"] = router(
            "PathPrefix(`/debug`)", "api@internal", ENTRYPOINT, MAX_PRIORITY - 1
        )
    if _dashboard_enabled(static):
        routers["dashboard"] = router(
            "PathPrefix(`/`)", "dashboard@internal", ENTRYPOINT, MAX_PRIORITY - 2
        )
    return routers


API = InternalService("api@internal", api, _api_enabled, _api_routers, _insecure)
DASHBOARD = InternalService("dashboard@internal", dashboard, _dashboard_enabled)

__all__ = ["API", "DASHBOARD", "api", "dashboard", "provider_of", "traffic"]
