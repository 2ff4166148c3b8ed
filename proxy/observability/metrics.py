"""The in-process metrics registry: plain counters the request path bumps, read by exporters.

Theory of operation
-------------------
Every finished HTTP exchange adds to one ``Cell``: a list of numbers (count,
duration sum, request and response bytes, then a duration histogram) found by
three dict look-ups from a ``RouteStats`` object that the snapshot build hangs
on each ``RouteTarget`` (``RouteTarget.stats``); requests no router took count
in their entry point's own ``RouteStats``. Nothing on the request path takes a
lock, formats a string, sends a datagram or touches prometheus-client: the
exporters (``statsd.py`` pushes deltas every ``pushInterval``,
``prometheus.py`` reads at scrape time) and the API walk the cells on their own
schedule, on the loop thread, so no count is ever torn.

One ``RouteStats`` per (router, service) pair, kept by name across reloads:
counters never go back because a router was edited. The router, service and
entry point figures are sums over those cells, made when read:

- entry point: every request on it (routed or not);
- router: every request its rule took, whether or not a middleware answered;
- service: only the requests that reached the service (``Exchange.service_called``),
  as in Traefik, where a middleware's 401 or 429 counts for the router only.

Durations go into a fixed histogram whose bounds are the union of Prometheus'
``buckets`` (Traefik's default ``[0.1, 0.3, 1.2, 5.0]``) and a fine grid from
1 ms to 10 s, with each bucket's count and sum of seconds. Prometheus gets its
own buckets exactly (each of its bounds is one of ours); StatsD gets one timing
per non-empty bucket, that bucket's mean, sent with the sample rate
``1/count`` so a StatsD server counts exactly as many timings as requests,
with their exact sum, and percentiles as fine as the grid (see statsd.py).

Duration is measured as Traefik does, from the request's first byte read to
the last byte of the response written (``perf_counter``), in seconds.

Read API (for the API's dashboard and the exporters; loop thread):
``REGISTRY.entrypoints()``, ``REGISTRY.routers()``, ``REGISTRY.services()``
return ``{name: Totals}``; ``REGISTRY.rows()`` yields every cell with its labels.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.runtime.aggregator import ReloadCounters
    from proxy.runtime.entrypoint import EntryPoint
    from proxy.runtime.snapshot import Snapshot
    from proxy.udp.server import UdpEntryPoint

log = logging.getLogger("turnout.metrics")

# Traefik's default Prometheus buckets, in seconds.
DEFAULT_BUCKETS = (0.1, 0.3, 1.2, 5.0)
# Fine enough for StatsD percentiles of a proxy (ms to s), coarse enough that
# bisecting it costs nothing.
FINE_GRID = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Cell layout: [REQUEST_BYTES, RESPONSE_BYTES, bucket counts..., bucket sums (seconds)...].
# The request count is the sum of the bucket counts and the duration the sum
# of the sums: two fewer additions per request.
REQUEST_BYTES: Final = 0
RESPONSE_BYTES: Final = 1
BUCKETS: Final = 2

# Which cell family a request lands in: did it reach the service, was it a WebSocket.
SERVED: Final = 1
WEBSOCKET: Final = 2
PROTOCOLS: Final = ("http", "http", "websocket", "websocket")

# Traefik labels methods as sent; an unknown method would let any client add
# series without bound, so those share one label.
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD: Final = "EXTENSION_METHOD"

Cell = list[float]
# entry point -> method -> status -> cell
Cells = dict[str, dict[str, dict[int, Cell]]]


class RouteStats:
    """The cells of one (router, service) pair, or of an entry point's unrouted requests."""

    __slots__ = ("cells", "router", "service")

    def __init__(self, router: str, service: str) -> None:
        self.router = router  # "" for requests no router took
        self.service = service
        # Indexed by SERVED | WEBSOCKET bits.
        self.cells: tuple[Cells, Cells, Cells, Cells] = ({}, {}, {}, {})


@dataclass(slots=True)
class Totals:
    """What the dashboard shows for one router, service or entry point."""

    requests: int = 0
    codes: dict[int, int] = field(default_factory=dict)  # status -> requests
    request_bytes: int = 0
    response_bytes: int = 0
    duration: float = 0.0  # seconds, summed
    open_connections: int = 0  # entry points only

    @property
    def errors(self) -> int:
        """Requests answered with a 5xx."""
        return sum(count for code, count in self.codes.items() if code >= 500)

    def add(self, row: Row) -> None:
        self.requests += row.count
        self.codes[row.code] = self.codes.get(row.code, 0) + row.count
        self.request_bytes += int(row.cell[REQUEST_BYTES])
        self.response_bytes += int(row.cell[RESPONSE_BYTES])
        self.duration += row.duration


@dataclass(frozen=True, slots=True)
class Row:
    """One cell with its labels."""

    entrypoint: str
    router: str  # "" when no router took the request
    service: str  # "" likewise
    served: bool  # reached the service
    protocol: str
    method: str
    code: int
    cell: Cell  # read only
    count: int
    duration: float  # seconds, summed


class Registry:
    """Every counter of one process. Mutated on the loop thread only."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.set_buckets(buckets)
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.unrouted: dict[str, RouteStats] = {}
        self.retries: dict[str, int] = {}  # service -> retries
        # Read, not owned: set by the running instance.
        self.entrypoint_objects: dict[str, EntryPoint | UdpEntryPoint] = {}
        self.reloads: ReloadCounters | None = None
        self.snapshot: Callable[[], Snapshot | None] = lambda: None
        # Route stats of routers gone from the live snapshot, kept one more reload
        # for requests still finishing on the old snapshot, then folded away.
        self._retired: list[RouteStats] = []
        self._folded: dict[str, RouteStats] = {}

    def set_buckets(self, buckets: tuple[float, ...] | list[float]) -> None:
        """The histogram bounds (seconds); only before any request is counted."""
        self.prometheus_buckets = tuple(sorted(float(b) for b in buckets))
        self.bounds = tuple(sorted(set(FINE_GRID) | set(self.prometheus_buckets)))
        self.width = len(self.bounds) + 1  # the last bucket is +Inf
        self.cell_size = BUCKETS + 2 * self.width

    def count(self, cell: Cell) -> int:
        return int(sum(cell[BUCKETS : BUCKETS + self.width]))

    def duration(self, cell: Cell) -> float:
        return float(sum(cell[BUCKETS + self.width :]))

    # -- building: called by the snapshot build (worker thread) ---------------

    def route(self, router: str, service: str) -> RouteStats:
        key = (router, service)
        stats = self.routes.get(key)
        if stats is None:
            # setdefault: two builds never run at once, but stay safe if they did.
            stats = self.routes.setdefault(key, RouteStats(router, service))
        return stats

    def entrypoint(self, name: str) -> RouteStats:
        stats = self.unrouted.get(name)
        if stats is None:
            stats = self.unrouted.setdefault(name, RouteStats("", ""))
        return stats

    def retain(self, snapshot: Snapshot) -> None:
        """A new snapshot is live: forget the stats of routers it no longer has.

        Their counts move into their entry points' totals (which never go back);
        the router and service series end, as Traefik drops the series of
        removed routers and services.
        """
        live = {
            (target.router, target.stats.service)
            for target in snapshot.routers.values()
            if target.stats is not None
        }
        for stats in self._retired:
            self._fold(stats)
        self._retired = []
        for key, stats in list(self.routes.items()):
            if key not in live:
                del self.routes[key]
                self._retired.append(stats)

    def _fold(self, stats: RouteStats) -> None:
        for index, cells in enumerate(stats.cells):
            for entrypoint, methods in cells.items():
                folded = self._folded.setdefault(entrypoint, RouteStats("", ""))
                into = folded.cells[index].setdefault(entrypoint, {})
                for method, statuses in methods.items():
                    target = into.setdefault(method, {})
                    for status, cell in statuses.items():
                        mine = target.get(status)
                        if mine is None:
                            target[status] = list(cell)
                        else:
                            for i, value in enumerate(cell):
                                mine[i] += value

    # -- the request path -------------------------------------------------------

    def new_cell(
        self, stats: RouteStats, kind: int, entrypoint: str, method: str, status: int
    ) -> Cell:
        """The cell a request lands in, created on first use (off the steady state)."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        methods = stats.cells[kind].setdefault(entrypoint, {})
        statuses = methods.setdefault(method, {})
        cell = statuses.get(status)
        if cell is None:
            cell = statuses[status] = [0] * (BUCKETS + self.width) + [0.0] * self.width
        return cell

    def retried(self, service: str) -> None:
        self.retries[service] = self.retries.get(service, 0) + 1

    # -- reading ------------------------------------------------------------------

    def _all_stats(self) -> Iterator[RouteStats]:
        yield from self.routes.values()
        yield from self._retired
        yield from self.unrouted.values()
        yield from self._folded.values()

    def rows(self) -> Iterator[Row]:
        """Every cell with its labels, of every entry point, router and service ever counted."""
        for stats in self._all_stats():
            yield from self._rows_of(stats)

    def live_rows(self) -> Iterator[Row]:
        """Rows of routers and services still configured (what router/service series show)."""
        for stats in self.routes.values():
            yield from self._rows_of(stats)

    def _rows_of(self, stats: RouteStats) -> Iterator[Row]:
        width = self.width
        for kind, cells in enumerate(stats.cells):
            protocol = PROTOCOLS[kind]
            served = bool(kind & SERVED)
            for entrypoint, methods in cells.items():
                for method, statuses in methods.items():
                    for code, cell in statuses.items():
                        yield Row(
                            entrypoint,
                            stats.router,
                            stats.service,
                            served,
                            protocol,
                            method,
                            code,
                            cell,
                            int(sum(cell[BUCKETS : BUCKETS + width])),
                            float(sum(cell[BUCKETS + width :])),
                        )

    def entrypoints(self) -> dict[str, Totals]:
        totals: dict[str, Totals] = {name: Totals() for name in self.entrypoint_objects}
        for row in self.rows():
            totals.setdefault(row.entrypoint, Totals()).add(row)
        for name, entrypoint in self.entrypoint_objects.items():
            totals[name].open_connections = len(entrypoint.connections)
        return totals

    def routers(self) -> dict[str, Totals]:
        totals: dict[str, Totals] = {}
        for row in self.live_rows():
            totals.setdefault(row.router, Totals()).add(row)
        return totals

    def services(self) -> dict[str, Totals]:
        totals: dict[str, Totals] = {}
        for row in self.live_rows():
            if row.served:
                totals.setdefault(row.service, Totals()).add(row)
        return totals

    def open_connections(self) -> dict[str, int]:
        return {name: len(e.connections) for name, e in self.entrypoint_objects.items()}

    def protocol_of(self, entrypoint: str) -> str:
        """``TCP`` or ``UDP``: Traefik's ``protocol`` label of open connections."""
        listener = self.entrypoint_objects.get(entrypoint)
        return "UDP" if listener is not None and hasattr(listener, "listener") else "TCP"

    def l4(self) -> dict[tuple[str, str, str, str], int]:
        """Open TCP connections and UDP sessions by (protocol, entry point, router, service).

        Read from the live entry points when asked: the relays count nothing per byte.
        A TCP connection counts once routed (dialling or relaying); a UDP session
        under the router of its entry point.
        """
        counts: dict[tuple[str, str, str, str], int] = {}
        snapshot = self.snapshot()
        for name, entrypoint in self.entrypoint_objects.items():
            listener = getattr(entrypoint, "listener", None)
            if listener is not None:  # a UDP entry point
                udp = getattr(snapshot, "udp", None)
                route = udp.routes.get(name) if udp is not None else None
                sessions = len(listener.sessions)
                if route is not None and sessions:
                    key = ("udp", name, route.router, route.service.name)
                    counts[key] = counts.get(key, 0) + sessions
                continue
            for conn in list(entrypoint.connections):
                target = getattr(conn, "target", None)  # TcpFront only
                if target is not None and getattr(conn, "server", None) is not None:
                    key = ("tcp", name, target.router, target.service.name)
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def udp_sessions_opened(self) -> dict[str, int]:
        """Sessions opened since start, per UDP entry point."""
        out = {}
        for name, entrypoint in self.entrypoint_objects.items():
            listener = getattr(entrypoint, "listener", None)
            if listener is not None:
                out[name] = int(listener.counters.get("sessions_opened", 0))
        return out

    def servers(self) -> Iterator[tuple[str, str, bool]]:
        """(service, url, up) of every load-balanced server of the live snapshot."""
        snapshot = self.snapshot()
        if snapshot is None:
            return
        for name, service in snapshot.services.items():
            for server in getattr(service, "members", ()):
                # Server.up: the health checks' verdict (always up without healthCheck).
                yield name, server.url, bool(getattr(server, "up", True))

    def to_dict(self) -> dict[str, Any]:
        """Totals by kind, JSON-ready (``/api`` and debugging)."""

        def encode(totals: dict[str, Totals], kind: str = "") -> dict[str, Any]:
            return {
                name: {
                    "requests": t.requests,
                    "errors": t.errors,
                    "codes": {str(code): n for code, n in sorted(t.codes.items())},
                    "requestBytes": t.request_bytes,
                    "responseBytes": t.response_bytes,
                    "durationSeconds": t.duration,
                    **({"openConnections": t.open_connections} if kind == "entrypoints" else {}),
                }
                for name, t in totals.items()
            }

        return {
            "entrypoints": encode(self.entrypoints(), "entrypoints"),
            "routers": encode(self.routers()),
            "services": encode(self.services()),
        }


# One registry per process (each worker of --workers N has its own).
REGISTRY: Final = Registry()


def recorder(entrypoint: str, registry: Registry = REGISTRY) -> Callable[[Exchange], None]:
    """The function that counts one finished exchange of ``entrypoint``.

    The request path's only metrics call: everything it needs is bound here,
    once per entry point, and it does four additions (a request without a body
    three). Its measured cost is in PERFORMANCE.md.
    """
    unrouted = registry.entrypoint(entrypoint)
    bounds = registry.bounds
    sums = registry.width  # offset from a bucket's count to its sum
    new_cell = registry.new_cell
    clock = time.perf_counter
    bisect_left = bisect.bisect_left
    # Most requests of a proxy end within the first bounds (1, 2.5, 5 ms): two
    # or three float comparisons instead of a call to bisect (about 600
    # instructions fewer per request).
    first, second, third = bounds[:3]

    def record(ex: Exchange) -> None:
        try:
            duration = clock() - ex.started
            route = ex.route
            stats = unrouted if route is None else route.stats
            if stats is None:
                return  # an internal router, and metrics.addInternals is off
            kind = ex.service_called | (WEBSOCKET if ex.upgrade is not None else 0)
            try:
                cell = stats.cells[kind][entrypoint][ex.method][ex.status]
            except KeyError:
                cell = new_cell(stats, kind, entrypoint, ex.method, ex.status)
            if ex.request_body_bytes:
                cell[REQUEST_BYTES] += ex.request_body_bytes
            cell[RESPONSE_BYTES] += ex.response_bytes
            if duration <= first:
                index = BUCKETS
            elif duration <= second:
                index = BUCKETS + 1
            elif duration <= third:
                index = BUCKETS + 2
            else:
                index = BUCKETS + bisect_left(bounds, duration)
            cell[index] += 1
            cell[index + sums] += duration
        except Exception:  # a counting bug must never cost a request its keep-alive
            log.exception("metrics: counting an exchange failed")

    return record
