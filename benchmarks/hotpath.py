"""Pure-Python cost of one proxied request, without sockets.

Drives Turnout's real client and upstream Protocols with in-memory transports:
the request bytes wrk sends go into ``HttpConnection.data_received``, the bytes
it writes upstream are checked, nginx's response bytes go into
``UpstreamConnection.data_received``, and the bytes written to the client are
checked. What is left is exactly the Python work Turnout does per request, free
of kernel time and of the noise of a shared machine, so optimisations of the hot
path can be compared to a fraction of a microsecond.

    python -m benchmarks.hotpath [--requests 200000] [--profile] [--metrics on|off|both]
                                 [--chain]

``--access-log /dev/null`` adds a JSON access log (flushed every 64 lines, as the
loop would); ``--metrics both`` (the default) measures with the metrics registry counting
(Traefik's default ``entryPoints.N.observability.metrics = true``) and without.
``--chain`` measures the bare router and the same router behind the
``middlewares`` scenario's chain (headers, stripPrefix, rateLimit never
reached, compress on a response too small to compress), interleaved.
``--new-connections`` measures a request that comes on a connection of its
own (``Connection: close``, as issue 4's ``new-conn`` scenario): the protocol
is built, accepts, serves one request and is lost, as uvloop would drive it
(what uvloop does in C for the socket and transport is not included).
``--services`` measures the plain load balancer against one with
``healthCheck`` and ``passiveHealthCheck`` (each answer reported to the
passive check; no probe runs here) and a weighted service with
``healthCheck`` over two such load balancers, interleaved.

It measures the build that runs: the compiled hot path after `make` (the first
line printed says which), its Python sources with ``TURNOUT_PURE=1``. cProfile
(``--profile``) and py-spy see into Python functions only: profile with
``TURNOUT_PURE=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import decode_dynamic
from proxy.config.static import AccessLog as AccessLogConfig
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import ObservabilityConfig, StaticConfig
from proxy.http.exchange import Exchange
from proxy.http.resolver import Resolver
from proxy.http.server import HttpConnection
from proxy.http.upstream import UpstreamConnection
from proxy.observability.accesslog import AccessLog
from proxy.runtime.entrypoint import Clock, EntryPoint
from proxy.runtime.snapshot import PoolRegistry, build_snapshot

# What wrk sends, and what nginx answers to it (nginx 1.22, `return 200 "hello world\n"`).
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 15:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 12\r\n"
    b"Connection: keep-alive\r\n\r\nhello world\n"
)


class MemoryTransport:
    """Just enough of a transport: collects writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(data)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


# The ``middlewares`` scenario's chain (benchmarks/targets.py), as decoded configuration.
CHAIN: dict[str, object] = {
    "bench-headers": {
        "headers": {
            "customRequestHeaders": {"X-Bench-Request": "1"},
            "customResponseHeaders": {"X-Bench-Response": "1"},
        }
    },
    "strip-api": {"stripPrefix": {"prefixes": ["/api"]}},
    "rate-limit": {"rateLimit": {"average": 100_000_000, "burst": 100_000_000}},
    "compress": {"compress": {}},
}


BACKEND = {"servers": [{"url": "http://127.0.0.1:8081"}]}
CHECKED = {**BACKEND, "healthCheck": {"path": "/health"}, "passiveHealthCheck": {}}
# The service ``app`` of each --services row (all end on the same server, so on one pool).
SERVICES: dict[str, dict[str, object]] = {
    "loadBalancer": {"app": {"loadBalancer": BACKEND}},
    "health": {"app": {"loadBalancer": CHECKED}},
    "weighted": {
        "app": {
            "weighted": {
                "services": [{"name": "a", "weight": 3}, {"name": "b"}],
                "healthCheck": {},
            }
        },
        "a": {"loadBalancer": CHECKED},
        "b": {"loadBalancer": CHECKED},
    },
}


def setup(
    routers: int = 1,
    metrics: bool = True,
    chain: bool = False,
    service: str = "loadBalancer",
) -> tuple[HttpConnection, UpstreamConnection, MemoryTransport, MemoryTransport]:
    loop = asyncio.new_event_loop()
    static = StaticConfig()
    raw: dict[str, object] = {
        "http": {
            "routers": {
                f"r{i}": {"rule": f"Host(`h{i}.example.com`)", "service": "app"}
                for i in range(routers - 1)
            }
            | {"bench": {"rule": "PathPrefix(`/`)", "service": "app"}},
            "services": SERVICES[service],
        }
    }
    if chain:
        http = raw["http"]
        assert isinstance(http, dict)
        http["middlewares"] = CHAIN
        http["routers"]["bench"]["middlewares"] = list(CHAIN)
    dynamic: DynamicConfig = decode_dynamic(raw, "bench")
    pools = PoolRegistry(loop, Resolver())
    snapshot, issues = build_snapshot(dynamic, static, entrypoints=["web"], pools=pools)
    assert not issues, issues
    config = EntryPointConfig(address=":8080", observability=ObservabilityConfig(metrics=metrics))
    entrypoint = EntryPoint("web", config, Clock(time.monotonic), snapshot)
    client = HttpConnection(entrypoint)
    client_transport = MemoryTransport()
    client.connection_made(client_transport)  # type: ignore[arg-type]
    [pool] = list(pools.all())
    upstream = UpstreamConnection(pool)
    upstream_transport = MemoryTransport()
    upstream.connection_made(upstream_transport)  # type: ignore[arg-type]
    pool.release(upstream, 0.0)
    return client, upstream, client_transport, upstream_transport


def run(
    requests: int,
    routers: int = 1,
    metrics: bool = True,
    chain: bool = False,
    service: str = "loadBalancer",
    access_log: str | None = None,
    new_connections: bool = False,
) -> float:
    """Seconds of Python per request; ``access_log``: a JSON access log to that file;
    ``new_connections``: each request on a connection of its own."""
    client, upstream, client_out, upstream_out = setup(routers, metrics, chain, service)
    if new_connections:
        return _run_new_connections(requests, client, upstream, upstream_out)
    log = None
    if access_log is not None:
        log = AccessLog(AccessLogConfig(file_path=access_log, format="json"))
        log.open()
        # The writer process formats the lines (unless TURNOUT_ACCESS_LOG_WRITER=inline);
        # its CPU is not counted here: this measures the request path.
        log_loop = asyncio.new_event_loop()
        log.start(log_loop)
        record = log.recorder("web")
        counting = client.entrypoint.observe
        if counting is None:
            client.entrypoint.observe = record
        else:

            def both(ex: Exchange) -> None:
                counting(ex)
                record(ex)

            client.entrypoint.observe = both
    # One request checked in full, so the loop below measures a working path.
    client.data_received(REQUEST)
    assert upstream_out.written and upstream_out.written[-1].startswith(b"GET / HTTP/1.1\r\n")
    upstream.data_received(RESPONSE)
    assert client_out.written[-1].endswith(b"hello world\n"), client_out.written
    client_feed = client.data_received
    upstream_feed = upstream.data_received
    started = time.process_time()
    if log is None:
        for _ in range(requests):
            client_feed(REQUEST)
            upstream_feed(RESPONSE)
    else:
        flush = log.flush
        for index in range(requests):
            client_feed(REQUEST)
            upstream_feed(RESPONSE)
            if index % 64 == 63:
                flush()  # what the loop does between reads, at most every 64 lines
        flush()
    elapsed = time.process_time() - started
    if log is not None:
        log.close()
        log_loop.close()
    client_out.written.clear()
    upstream_out.written.clear()
    return elapsed / requests


def _run_new_connections(
    requests: int,
    first: HttpConnection,
    upstream: UpstreamConnection,
    upstream_out: MemoryTransport,
) -> float:
    entrypoint = first.entrypoint
    upstream_feed = upstream.data_received

    def one() -> MemoryTransport:
        conn = entrypoint.protocol()
        transport = MemoryTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(CLOSE_REQUEST)
        upstream_feed(RESPONSE)
        conn.connection_lost(None)  # uvloop calls it once the close is done
        upstream_out.written.clear()
        return transport

    out = one()  # one checked in full
    assert out.written and out.written[-1].endswith(b"hello world\n"), out.written
    assert b"Connection: close\r\n" in b"".join(out.written)
    started = time.process_time()
    for _ in range(requests):
        one()
    return (time.process_time() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--routers", type=int, default=1)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile of the loop (with TURNOUT_PURE=1: it cannot see compiled code)",
    )
    parser.add_argument("--metrics", choices=("on", "off", "both"), default="both")
    parser.add_argument("--chain", action="store_true", help="bare router vs the chain")
    parser.add_argument(
        "--services", action="store_true", help="load balancer vs health-checked vs weighted"
    )
    parser.add_argument(
        "--access-log", metavar="FILE", help="also write a JSON access log to FILE (/dev/null)"
    )
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="also measure a request on a connection of its own (Connection: close)",
    )
    args = parser.parse_args()
    from proxy import native

    print(native.describe())
    if args.services:
        metrics = args.metrics != "off"
        costs = {name: float("inf") for name in SERVICES}
        for _ in range(3):
            for name in SERVICES:
                costs[name] = min(
                    costs[name], run(args.requests, args.routers, metrics, False, name)
                )
        plain = costs["loadBalancer"] * 1e6
        for name, cost in costs.items():
            extra = cost * 1e6 - plain
            print(f"{cost * 1e6:.2f} µs of Python per request, {name} ({extra:+.2f} µs)")
        return
    if args.chain:
        metrics = args.metrics != "off"
        best = {False: float("inf"), True: float("inf")}
        for _ in range(3):
            for chained in (False, True):
                cost = run(args.requests, args.routers, metrics, chained)
                best[chained] = min(best[chained], cost)
        bare, chained_cost = best[False] * 1e6, best[True] * 1e6
        print(f"{bare:.2f} µs of Python per request, bare router")
        print(f"{chained_cost:.2f} µs with the chain (+{chained_cost - bare:.2f} µs)")
        return
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(args.requests // 4, args.routers, args.metrics != "off")
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.metrics]
    # Interleaved, best of 3 each: the machine is shared and noisy.
    best = {mode: float("inf") for mode in modes}
    for _ in range(3):
        for mode in modes:
            best[mode] = min(
                best[mode], run(args.requests, args.routers, mode, access_log=args.access_log)
            )
    for mode in modes:
        print(
            f"{best[mode] * 1e6:.2f} µs of Python per proxied request "
            f"({args.routers} routers, metrics {'on' if mode else 'off'}"
            + (", JSON access log)" if args.access_log else ")")
        )
    if args.new_connections:
        for mode in modes:
            cost = min(
                run(args.requests // 4, args.routers, mode, new_connections=True) for _ in range(3)
            )
            print(
                f"{cost * 1e6:.2f} µs of Python per request on a new connection "
                f"(metrics {'on' if mode else 'off'})"
            )


if __name__ == "__main__":
    main()
