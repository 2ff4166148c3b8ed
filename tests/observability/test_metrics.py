"""The registry through Turnout's real client and upstream Protocols, in memory.

Async tests: the resolver the pools use wants a running loop.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import replace

from benchmarks.hotpath import REQUEST, RESPONSE, setup
from proxy.config.load import decode_dynamic
from proxy.config.static import StaticConfig
from proxy.http.exchange import Exchange
from proxy.http.resolver import Resolver
from proxy.observability.metrics import BUCKETS, REGISTRY, Registry, recorder
from proxy.runtime.snapshot import PoolRegistry, build_snapshot


def _counts() -> tuple[int, int, int]:
    routers = REGISTRY.routers().get("bench@file")
    services = REGISTRY.services().get("app@file")
    entrypoints = REGISTRY.entrypoints().get("web")
    return tuple(t.requests if t else 0 for t in (routers, services, entrypoints))  # type: ignore[return-value]


async def test_each_finished_request_counts_once_per_router_service_and_entry_point() -> None:
    client, upstream, _, _ = setup()
    before = _counts()
    for _ in range(100):
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)
    after = _counts()
    assert [a - b for a, b in zip(after, before, strict=True)] == [100, 100, 100]
    row = next(r for r in REGISTRY.live_rows() if r.router == "bench@file")
    assert (row.method, row.code, row.protocol, row.served) == ("GET", 200, "http", True)
    assert row.cell[1] >= 100 * len(b"hello world\n")  # response body bytes


async def test_unrouted_requests_count_for_the_entry_point_only() -> None:
    client, _, out, _ = setup()
    raw = {
        "http": {
            "routers": {"only": {"rule": "Host(`only.example`)", "service": "app"}},
            "services": {"app": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
        }
    }
    snapshot, issues = build_snapshot(
        decode_dynamic(raw, "test"), StaticConfig(), entrypoints=["web"], pools=_pools()
    )
    assert not issues
    client.entrypoint.snapshot = snapshot
    before = REGISTRY.entrypoints()["web"].codes.get(404, 0)
    routers_before = {name: t.requests for name, t in REGISTRY.routers().items()}
    for _ in range(7):
        client.data_received(b"GET / HTTP/1.1\r\nHost: elsewhere\r\n\r\n")
    assert b"404 page not found" in b"".join(out.written)
    assert REGISTRY.entrypoints()["web"].codes[404] == before + 7
    after = {name: t.requests for name, t in REGISTRY.routers().items()}
    assert {n: c for n, c in after.items() if routers_before.get(n, 0) != c} == {}


async def test_each_duration_lands_in_its_histogram_bucket() -> None:
    """The recorder's shortcut for the first bounds agrees with bisecting them all."""
    client, upstream, _, _ = setup()
    finished: list[Exchange] = []
    client.entrypoint.observe = finished.append
    client.data_received(REQUEST)
    upstream.data_received(RESPONSE)
    [ex] = finished
    registry = Registry((0.0002, 0.3))  # a custom bound below the fine grid's first
    stats = registry.route("r@file", "s@file")
    ex.route = replace(ex.route, stats=stats)
    record = recorder("web", registry)
    # Each at least 0.1 ms from a bound: the recorder's clock runs on a little.
    durations = (0.0001, 0.0005, 0.0018, 0.0037, 0.0075, 0.27, 0.31, 20.0)
    for duration in durations:
        ex.started = time.perf_counter() - duration
        record(ex)
    [cell] = [row.cell for row in registry.live_rows()]
    width = registry.width
    counts = cell[BUCKETS : BUCKETS + width]
    expected = [0] * width
    for duration in durations:
        expected[bisect.bisect_left(registry.bounds, duration)] += 1
    assert counts == expected
    assert sum(counts) == len(durations)


def _pools() -> PoolRegistry:
    return PoolRegistry(asyncio.get_running_loop(), Resolver())


def test_unknown_methods_share_one_label() -> None:
    registry = Registry()
    stats = registry.route("r@file", "s@file")
    a = registry.new_cell(stats, 1, "web", "BREW", 200)
    b = registry.new_cell(stats, 1, "web", "WHEN", 200)
    assert a is b
    assert list(stats.cells[1]["web"]) == ["EXTENSION_METHOD"]


def test_buckets_include_the_prometheus_bounds_exactly() -> None:
    registry = Registry((0.2, 0.7))
    assert 0.2 in registry.bounds and 0.7 in registry.bounds
    assert registry.cell_size == BUCKETS + 2 * (len(registry.bounds) + 1)


def test_removed_routers_leave_their_series_and_keep_their_entry_point_counts() -> None:
    class Live:  # what retain() reads of a snapshot
        def __init__(self, *targets: object) -> None:
            self.routers = {f"r{i}": t for i, t in enumerate(targets)}

    class Target:
        def __init__(self, router: str, stats: object) -> None:
            self.router = router
            self.stats = stats

    registry = Registry()
    kept = registry.route("kept@file", "s@file")
    gone = registry.route("gone@file", "s@file")
    for stats, count in ((kept, 3), (gone, 5)):
        cell = registry.new_cell(stats, 1, "web", "GET", 200)
        cell[BUCKETS] += count
    assert registry.entrypoints()["web"].requests == 8
    live = Live(Target("kept@file", kept))
    registry.retain(live)  # type: ignore[arg-type]
    assert set(registry.routers()) == {"kept@file"}
    assert registry.services()["s@file"].requests == 3
    assert registry.entrypoints()["web"].requests == 8  # counters never go back
    late = gone.cells[1]["web"]["GET"][200]
    late[BUCKETS] += 1  # a request that began on the old snapshot ends now
    registry.retain(live)  # type: ignore[arg-type]  # the next reload folds it away
    assert registry.entrypoints()["web"].requests == 9
    assert not registry._retired
