"""``/api/traffic``: the metrics registry's request counters, for the dashboard's live rates.

Counters since start, not rates: the page differences two readings, so the
server keeps no history and a missed poll only widens the window.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from proxy.observability.metrics import REGISTRY, Totals


class TrafficCounters(msgspec.Struct, rename="camel", omit_defaults=True):
    """Requests since start, by outcome; the dashboard differences two answers into rates."""

    requests: int
    client_errors: int  # 4xx
    server_errors: int  # 5xx
    duration: float  # seconds, summed over the requests
    # Entry points only: client connections open now.
    open_connections: int | None = None


class Traffic(msgspec.Struct):
    available: bool
    time: float  # Unix time of the reading
    routers: dict[str, TrafficCounters]
    services: dict[str, TrafficCounters]
    entrypoints: dict[str, TrafficCounters]


def _counters(totals: dict[str, Totals]) -> dict[str, TrafficCounters]:
    counters = {}
    for name, total in totals.items():
        client = server = 0
        for code, count in total.codes.items():
            if code >= 500:
                server += count
            elif code >= 400:
                client += count
        counters[name] = TrafficCounters(total.requests, client, server, total.duration)
    return counters


def _entrypoint_counters(totals: dict[str, Totals]) -> dict[str, TrafficCounters]:
    counters = _counters(totals)
    for name, counter in counters.items():
        counter.open_connections = totals[name].open_connections
    return counters


def traffic(runtime: Any) -> Traffic:
    """The metrics registry's request counters per router, service and entry point.

    Counted only where ``entryPoints.N.observability.metrics`` is on (Traefik's
    default); ``available`` is false when no entry point counts.
    """
    counting = runtime is not None and any(
        e.config.observability.metrics for e in runtime.entrypoints.values()
    )
    return Traffic(
        available=counting,
        time=time.time(),
        routers=_counters(REGISTRY.routers()),
        services=_counters(REGISTRY.services()),
        entrypoints=_entrypoint_counters(REGISTRY.entrypoints()),
    )
