"""``metrics.prometheus``: the registry in Prometheus' text format, built at scrape time.

A custom prometheus-client ``Collector`` reads the registry's cells when
``/metrics`` is asked for, so the request path never touches a
prometheus-client object. Names are Traefik v3's with ``turnout_`` for
``traefik_``; labels too:

- ``turnout_config_reloads_total``, ``turnout_config_last_reload_success`` and,
  Turnout only, ``turnout_config_reloads_failure_total`` and
  ``turnout_config_last_reload_failure`` (Unix seconds; 0 before the first);
- ``turnout_open_connections{entrypoint,protocol}`` (``TCP``, or ``UDP`` sessions);
- Turnout only: ``turnout_tcp_router_open_connections{entrypoint,router,service}``,
  ``turnout_udp_router_open_sessions{entrypoint,router,service}`` and
  ``turnout_udp_entrypoint_sessions_total{entrypoint}`` (TCP/UDP byte and
  connection totals are not counted yet);
- ``turnout_{entrypoint,router,service}_requests_total``,
  ``..._request_duration_seconds`` (histogram, ``buckets``),
  ``..._requests_bytes_total`` and ``..._responses_bytes_total``, labelled
  ``code``, ``method``, ``protocol`` and the object (``entrypoint``;
  ``router`` and ``service``; ``service``), each family present when its
  ``add*Labels`` option is on (routers off by default, as in Traefik);
- ``turnout_service_retries_total{service}``, ``turnout_service_server_up{service,url}``;
- the process collector's ``process_*`` (CPU, memory, descriptors), as
  Traefik exposes its Go process'.

``traefik_tls_certs_not_after`` has no counterpart: Turnout does not terminate TLS.
Served by ``prometheus@internal`` (see ``serve``): with ``manualRouting =
false`` (the default) a router of provider ``internal`` takes
``PathPrefix(`/metrics`)`` on ``entryPoint`` (default ``traefik``, created on
:8080 when not configured), as Traefik does; with ``manualRouting = true`` a
router of the user's names the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from proxy.api.response import TEXT, send
from proxy.observability.metrics import BUCKETS, REGISTRY, REQUEST_BYTES, RESPONSE_BYTES, Registry
from proxy.runtime.internal import ENTRYPOINT, MAX_PRIORITY, InternalService, router

if TYPE_CHECKING:
    from proxy.config.dynamic import Router
    from proxy.config.static import Prometheus as PrometheusConfig
    from proxy.config.static import StaticConfig
    from proxy.http.exchange import Exchange

PREFIX = "turnout_"

# (family, its object labels) in Traefik's label order.
_FAMILIES = {
    "entrypoint": ("entrypoint",),
    "router": ("router", "service"),
    "service": ("service",),
}


class Aggregate:
    """One label set's sums: count, bytes, and the registry's buckets (counts, then sums)."""

    __slots__ = ("buckets", "count", "request_bytes", "response_bytes")

    def __init__(self, size: int) -> None:
        self.count = 0
        self.request_bytes = 0.0
        self.response_bytes = 0.0
        self.buckets = [0.0] * size


class TurnoutCollector:
    """Reads the registry at each scrape."""

    def __init__(self, registry: Registry, config: PrometheusConfig) -> None:
        self.registry = registry
        self.families = [
            family
            for family, enabled in (
                ("entrypoint", config.add_entry_points_labels),
                ("router", config.add_routers_labels),
                ("service", config.add_services_labels),
            )
            if enabled
        ]

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families vary with the configuration

    def collect(self) -> Iterator[Metric]:
        registry = self.registry
        yield from self._config()
        connections = GaugeMetricFamily(
            PREFIX + "open_connections",
            "How many open connections exist, by entry point and protocol.",
            labels=["entrypoint", "protocol"],
        )
        for entrypoint, count in registry.open_connections().items():
            connections.add_metric([entrypoint, registry.protocol_of(entrypoint)], count)
        yield connections
        yield from self._l4()
        width = registry.width
        for family in self.families:
            sums = self._aggregate(family)
            yield from self._family(family, sums, width)
        if "service" in self.families:
            retries = CounterMetricFamily(
                PREFIX + "service_retries",
                "How many request retries happened on a service.",
                labels=["service"],
            )
            for service, count in sorted(registry.retries.items()):
                retries.add_metric([service], count)
            yield retries
            up = GaugeMetricFamily(
                PREFIX + "service_server_up",
                "service server is up, described by gauge value of 0 or 1.",
                labels=["service", "url"],
            )
            for service, url, is_up in registry.servers():
                up.add_metric([service, url], 1 if is_up else 0)
            yield up

    def _l4(self) -> Iterator[Metric]:
        """Turnout only (Traefik has no TCP/UDP router metrics): open connections, sessions."""
        labels = ["entrypoint", "router", "service"]
        tcp = GaugeMetricFamily(
            PREFIX + "tcp_router_open_connections",
            "Open TCP connections routed by a TCP router, by entry point, router and service.",
            labels=labels,
        )
        udp = GaugeMetricFamily(
            PREFIX + "udp_router_open_sessions",
            "Open UDP sessions, by entry point, router and service.",
            labels=labels,
        )
        for (protocol, *names), count in sorted(self.registry.l4().items()):
            (tcp if protocol == "tcp" else udp).add_metric(names, count)
        opened = CounterMetricFamily(
            PREFIX + "udp_entrypoint_sessions",
            "UDP sessions opened on an entry point.",
            labels=["entrypoint"],
        )
        for entrypoint, count in sorted(self.registry.udp_sessions_opened().items()):
            opened.add_metric([entrypoint], count)
        yield tcp
        yield udp
        yield opened

    def _config(self) -> Iterator[Metric]:
        reloads = self.registry.reloads
        total = failures = 0
        success = failure = 0.0
        if reloads is not None:
            total, failures = reloads.total, reloads.failures
            success, failure = reloads.last_success, reloads.last_failure
        yield CounterMetricFamily(PREFIX + "config_reloads", "Config reloads", value=total)
        yield CounterMetricFamily(
            PREFIX + "config_reloads_failure", "Config reloads that were refused", value=failures
        )
        yield GaugeMetricFamily(
            PREFIX + "config_last_reload_success", "Last config reload success", value=success
        )
        yield GaugeMetricFamily(
            PREFIX + "config_last_reload_failure", "Last config reload failure", value=failure
        )

    def _aggregate(self, family: str) -> dict[tuple[str, ...], Aggregate]:
        registry = self.registry
        size = 2 * registry.width
        sums: dict[tuple[str, ...], Aggregate] = {}
        rows = registry.rows() if family == "entrypoint" else registry.live_rows()
        for row in rows:
            if family == "entrypoint":
                objects: tuple[str, ...] = (row.entrypoint,)
            elif not row.router or (family == "service" and not row.served):
                continue
            elif family == "router":
                objects = (row.router, row.service)
            else:
                objects = (row.service,)
            key = (str(row.code), row.method, row.protocol, *objects)
            aggregate = sums.get(key)
            if aggregate is None:
                aggregate = sums[key] = Aggregate(size)
            cell = row.cell
            aggregate.count += row.count
            aggregate.request_bytes += cell[REQUEST_BYTES]
            aggregate.response_bytes += cell[RESPONSE_BYTES]
            buckets = aggregate.buckets
            for index in range(size):
                buckets[index] += cell[BUCKETS + index]
        return sums

    def _family(
        self, family: str, sums: dict[tuple[str, ...], Aggregate], width: int
    ) -> Iterator[Metric]:
        labels = ["code", "method", "protocol", *_FAMILIES[family]]
        where = {"entrypoint": "an entrypoint", "router": "a router"}.get(family, "a service")
        name = f"{PREFIX}{family}_"
        total = CounterMetricFamily(
            name + "requests",
            f"How many HTTP requests processed on {where}, partitioned by status code, "
            "protocol, and method.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            name + "request_duration_seconds",
            f"How long it took to process the request on {where}, partitioned by status "
            "code, protocol, and method.",
            labels=labels,
        )
        request_bytes = CounterMetricFamily(
            name + "requests_bytes",
            f"The total size of requests in bytes handled by {where}, partitioned by status "
            "code, protocol, and method.",
            labels=labels,
        )
        response_bytes = CounterMetricFamily(
            name + "responses_bytes",
            f"The total size of responses in bytes handled by {where}, partitioned by status "
            "code, protocol, and method.",
            labels=labels,
        )
        bounds = self.registry.bounds
        edges = [bounds.index(b) for b in self.registry.prometheus_buckets]
        for key, aggregate in sorted(sums.items()):
            values = list(key)
            total.add_metric(values, aggregate.count)
            request_bytes.add_metric(values, aggregate.request_bytes)
            response_bytes.add_metric(values, aggregate.response_bytes)
            counts = aggregate.buckets[:width]
            cumulative = []
            for bound, edge in zip(self.registry.prometheus_buckets, edges, strict=True):
                cumulative.append((_float(bound), sum(counts[: edge + 1])))
            cumulative.append(("+Inf", aggregate.count))
            duration.add_metric(values, cumulative, sum(aggregate.buckets[width:]))
        yield total
        yield duration
        yield request_bytes
        yield response_bytes


def _float(value: float) -> str:
    return repr(float(value))


class Exposition:
    """What ``/metrics`` answers: the collector and the process' own figures."""

    def __init__(self, config: PrometheusConfig, registry: Registry = REGISTRY) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TurnoutCollector(registry, config))  # type: ignore[arg-type]
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# Set when metrics.prometheus is configured (proxy/runtime/instance.py).
EXPOSITION: Exposition | None = None


def serve(exchange: Exchange) -> None:
    """``prometheus@internal``: GET /metrics, as Traefik's handler."""
    if exchange.path != "/metrics" or EXPOSITION is None:
        send(exchange, 404, b"404 page not found\n", TEXT)
        return
    if exchange.method not in ("GET", "HEAD"):
        send(exchange, 405, b"Method Not Allowed", TEXT, b"Allow: GET, HEAD\r\n")
        return
    body = EXPOSITION.render()
    exchange.response_bytes = 0 if exchange.is_head else len(body)
    # The classic text format every Prometheus reads (Traefik's Go client serves it too).
    send(exchange, 200, body, CONTENT_TYPE_PLAIN_0_0_4.encode())


def _enabled(static: StaticConfig) -> bool:
    return static.metrics is not None and static.metrics.prometheus is not None


def _config(static: StaticConfig) -> PrometheusConfig | None:
    return static.metrics.prometheus if static.metrics is not None else None


def _routers(static: StaticConfig) -> dict[str, Router]:
    config = _config(static)
    if config is None or config.manual_routing:
        return {}
    rule = "PathPrefix(`/metrics`)"
    return {"prometheus": router(rule, "prometheus@internal", config.entry_point, MAX_PRIORITY)}


def _needs_entrypoint(static: StaticConfig) -> bool:
    config = _config(static)
    return config is not None and not config.manual_routing and config.entry_point == ENTRYPOINT


PROMETHEUS = InternalService("prometheus@internal", serve, _enabled, _routers, _needs_entrypoint)
