"""``ping@internal``: /ping answers 200 OK, and ``terminatingStatusCode`` while stopping.

As Traefik's ping handler: the body is the status text, GET and HEAD only.
During a graceful stop (SIGTERM, for ``requestAcceptGraceTimeout``) it answers
``ping.terminatingStatusCode`` (503 by default), so a load balancer in front
sees the instance leave and drains it while requests in flight finish.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy.api.response import TEXT, send
from proxy.runtime.internal import ENTRYPOINT, MAX_PRIORITY, InternalService, router

if TYPE_CHECKING:
    from proxy.config.dynamic import Router
    from proxy.config.static import StaticConfig
    from proxy.http.exchange import Exchange


def ping(exchange: Exchange) -> None:
    if exchange.path != "/ping":
        send(exchange, 404, b"404 page not found\n", TEXT)
        return
    if exchange.method not in ("GET", "HEAD"):
        send(exchange, 405, b"Method Not Allowed", TEXT, b"Allow: GET, HEAD\r\n")
        return
    status = 200
    runtime = exchange.conn.entrypoint.runtime
    if runtime is not None and runtime.terminating:
        config = runtime.static.ping
        status = config.terminating_status_code if config is not None else 503
    try:
        text = HTTPStatus(status).phrase.encode()
    except ValueError:
        text = b""
    send(exchange, status, text, TEXT)


def _enabled(static: StaticConfig) -> bool:
    return static.ping is not None


def _routers(static: StaticConfig) -> dict[str, Router]:
    config = static.ping
    if config is None or config.manual_routing:
        return {}
    rule = "PathPrefix(`/ping`)"
    return {"ping": router(rule, "ping@internal", config.entry_point, MAX_PRIORITY)}


def _needs_entrypoint(static: StaticConfig) -> bool:
    config = static.ping
    return config is not None and not config.manual_routing and config.entry_point == ENTRYPOINT


PING = InternalService("ping@internal", ping, _enabled, _routers, _needs_entrypoint)
