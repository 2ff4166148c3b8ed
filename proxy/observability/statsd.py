"""``metrics.statsD``: the registry pushed to a StatsD server every ``pushInterval``.

Names are the ones Traefik's code sends (``<prefix>.entrypoint.request.total``,
``.router.request.total``, ``.service.request.total``, ``...request.duration``
in milliseconds, ``.service.retries.total``, ``.service.server.up``,
``.config.reload.total``, ``.open.connections``, ...). Traefik drops every label
on StatsD, which leaves one figure for all routers; Turnout appends the labels
of the enabled families as name segments, sanitised (``[A-Za-z0-9_-]``, the rest
``_``), so ``turnout.router.request.total.api_file.200`` is router ``api@file``'s
count of 200s. Families follow ``addEntryPointsLabels`` (default true),
``addRoutersLabels`` (false) and ``addServicesLabels`` (true), as in Traefik.

- Counters are sent as deltas since the previous push (``|c``), only when not zero.
- Gauges (``|g``): open connections, server up, last reload timestamps.
- Durations: Traefik (go-kit) sends every request's timing. Turnout aggregates
  in process: per name, each histogram bucket that gained requests since the
  last push is sent once, as that bucket's mean in ms with the sample rate
  ``1/count`` (``name:12.5|ms|@0.25`` stands for 4 requests averaging 12.5 ms).
  A StatsD server therefore counts exactly as many timings as requests, with
  their exact mean per bucket; its percentiles are as fine as the bucket grid
  (1 ms to 10 s, see metrics.py). One datagram per bucket and name, not per request.

The push runs on the event loop from a timer (no task, nothing per request),
in one ``statsd`` pipeline: datagrams of up to 1,432 bytes, many lines each.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import statsd

from proxy.observability.metrics import BUCKETS, REQUEST_BYTES, RESPONSE_BYTES, Registry

if TYPE_CHECKING:
    from proxy.config.static import Statsd as StatsdConfig

log = logging.getLogger("turnout.metrics")

DEFAULT_PREFIX = "turnout"
# Etsy StatsD's advice for a 1,500-byte MTU; loopback and LANs carry it whole.
MAX_DATAGRAM = 1432

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sanitise(segment: str) -> str:
    """A label value as one StatsD name segment: no dots, colons or pipes."""
    return _UNSAFE.sub("_", segment) or "_"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; Traefik's default is localhost:8125."""
    host, sep, port = (address or "localhost:8125").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {address!r}: expected host:port")
    return host.strip("[]") or "localhost", int(port)


class StatsdPusher:
    """Pushes the registry's deltas; one per process."""

    def __init__(self, config: StatsdConfig, registry: Registry) -> None:
        self.registry = registry
        self.interval = max(float(config.push_interval), 0.01)
        prefix = config.prefix
        # Traefik's own default prefix ("traefik") is read as Turnout's.
        self.prefix = DEFAULT_PREFIX if prefix in ("", "traefik") else prefix
        self.entrypoints = config.add_entry_points_labels
        self.routers = config.add_routers_labels
        self.services = config.add_services_labels
        host, port = parse_address(config.address)
        self.client = statsd.StatsClient(
            host, port, prefix=self.prefix, maxudpsize=MAX_DATAGRAM, ipv6=":" in host
        )
        self.sent: dict[str, float] = {}  # counter name -> value at the last push
        self.sent_buckets: dict[str, list[float]] = {}  # duration name -> counts and sums
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        try:
            self.push()
        except Exception as error:  # a StatsD hiccup must not stop the pushes
            log.warning("statsd: push failed: %s", error)
        assert self._loop is not None
        self._timer = self._loop.call_later(self.interval, self._tick)

    def close(self) -> None:
        """Stop pushing; what was counted since the last push is sent first."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            try:
                self.push()
            except Exception as error:
                log.debug("statsd: last push failed: %s", error)
        self.client.close()

    # -- one push ---------------------------------------------------------------

    def push(self) -> None:
        pipe = self.client.pipeline()
        counters: dict[str, float] = {}
        durations: dict[str, list[float]] = {}
        registry = self.registry
        width = registry.width
        families = []
        if self.entrypoints:
            families.append("entrypoint")
        if self.routers:
            families.append("router")
        if self.services:
            families.append("service")
        for row in registry.rows():
            for family in families:
                if family == "entrypoint":
                    label = row.entrypoint
                elif not row.router or (family == "service" and not row.served):
                    continue  # unrouted, or answered before the service
                else:
                    label = row.router if family == "router" else row.service
                suffix = f"{sanitise(label)}.{row.code}"
                cell = row.cell
                _add(counters, f"{family}.request.total.{suffix}", row.count)
                _add(counters, f"{family}.requests.bytes.total.{suffix}", cell[REQUEST_BYTES])
                _add(counters, f"{family}.responses.bytes.total.{suffix}", cell[RESPONSE_BYTES])
                buckets = durations.get(f"{family}.request.duration.{suffix}")
                if buckets is None:
                    durations[f"{family}.request.duration.{suffix}"] = list(cell[BUCKETS:])
                else:
                    for index, value in enumerate(cell[BUCKETS:]):
                        buckets[index] += value
        if self.services:
            for service, retries in registry.retries.items():
                counters[f"service.retries.total.{sanitise(service)}"] = retries
            for service, url, up in registry.servers():
                pipe.gauge(f"service.server.up.{sanitise(service)}.{sanitise(url)}", int(up))
        reloads = registry.reloads
        if reloads is not None:
            counters["config.reload.total"] = reloads.total
            counters["config.reload.failure.total"] = reloads.failures
            if reloads.last_success:
                pipe.gauge("config.reload.lastSuccessTimestamp", int(reloads.last_success))
            if reloads.last_failure:
                pipe.gauge("config.reload.lastFailureTimestamp", int(reloads.last_failure))
        connections = registry.open_connections()
        pipe.gauge("open.connections", sum(connections.values()))
        for entrypoint, count in connections.items():
            pipe.gauge(f"open.connections.{sanitise(entrypoint)}", count)
        # Turnout only: routed TCP connections and UDP sessions open now.
        if self.routers:
            for (protocol, _, router, _), count in registry.l4().items():
                kind = "open.connections" if protocol == "tcp" else "open.sessions"
                pipe.gauge(f"{protocol}.router.{kind}.{sanitise(router)}", count)
        if self.entrypoints:
            for entrypoint, count in registry.udp_sessions_opened().items():
                counters[f"udp.entrypoint.sessions.total.{sanitise(entrypoint)}"] = count
        for name, value in counters.items():
            delta = value - self.sent.get(name, 0)
            if delta > 0:
                pipe.incr(name, int(delta))
                self.sent[name] = value
        for name, buckets in durations.items():
            before = self.sent_buckets.get(name)
            for index in range(width):
                count = buckets[index] - (before[index] if before else 0)
                if count <= 0:
                    continue
                total = buckets[index + width] - (before[index + width] if before else 0.0)
                mean_ms = total * 1000.0 / count
                rate = "" if count == 1 else f"|@{1 / count!r}"
                # Sent whole, not through StatsClient.timing: with a rate below 1
                # the client would drop the line at random (client-side sampling).
                pipe._after(pipe._prepare(name, f"{mean_ms:0.6f}|ms{rate}", 1))
            self.sent_buckets[name] = buckets
        pipe.send()


def _add(counters: dict[str, float], name: str, value: float) -> None:
    counters[name] = counters.get(name, 0) + value
