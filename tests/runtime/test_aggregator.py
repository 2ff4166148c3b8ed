"""The aggregator: throttled updates, whole refusal, lastError, pending cross-provider updates."""

from __future__ import annotations

import asyncio

import pytest

from proxy.config.load import ConfigError, ConfigIssue, decode_dynamic
from proxy.config.static import StaticConfig
from proxy.rules import SimpleRequest
from proxy.runtime.aggregator import Aggregator
from proxy.runtime.snapshot import Snapshot


def routers(*hosts: str, service: str = "whoami@internal") -> object:
    return decode_dynamic(
        {
            "http": {
                "routers": {
                    host.split(".")[0]: {"rule": f"Host(`{host}`)", "service": service}
                    for host in hosts
                }
            }
        },
        "test",
    )


def make(throttle: float = 0.05) -> tuple[Aggregator, list[Snapshot]]:
    swaps: list[Snapshot] = []
    aggregator = Aggregator(
        StaticConfig(), ["web"], on_swap=swaps.append, throttle=throttle, clock=lambda: 1000.0
    )
    aggregator.register("file", "dynamic.toml")
    aggregator.register("redis", "redis://127.0.0.1:6379/traefik")
    return aggregator, swaps


def answers(snapshot: Snapshot, host: str) -> str | None:
    target = snapshot.route("web", SimpleRequest("GET", host, "/"))
    return None if target is None else target.router


async def test_start_builds_every_provider_together() -> None:
    aggregator, swaps = make()
    issues = aggregator.start({"file": routers("a.example"), "redis": routers("b.example")})
    assert issues == []
    assert len(swaps) == 1
    assert answers(swaps[0], "a.example") == "a@file"
    assert answers(swaps[0], "b.example") == "b@redis"


async def test_start_refuses_a_bad_remote_provider_but_keeps_the_file() -> None:
    aggregator, swaps = make()
    bad = routers("b.example", service="missing")
    issues = aggregator.start({"file": routers("a.example"), "redis": bad}, required="file")
    assert issues == []
    assert answers(swaps[-1], "a.example") == "a@file"
    assert answers(swaps[-1], "b.example") is None
    error = aggregator.providers["redis"].last_error
    assert error is not None
    assert [str(i) for i in error.issues] == [
        "redis://127.0.0.1:6379/traefik: http.routers.b.service: unknown service 'missing'"
    ]


async def test_start_reports_the_required_providers_issues() -> None:
    aggregator, swaps = make()
    issues = aggregator.start({"file": routers("a.example", service="nope")}, required="file")
    assert [str(i) for i in issues] == [
        "dynamic.toml: http.routers.a.service: unknown service 'nope'"
    ]
    assert swaps == []


async def test_a_bad_update_is_refused_whole_and_the_previous_stays_live() -> None:
    aggregator, swaps = make()
    aggregator.start({"file": routers("a.example")})
    # One good router and one bad one: nothing of it may go live.
    aggregator.submit(
        "file",
        decode_dynamic(
            {
                "http": {
                    "routers": {
                        "good": {"rule": "Host(`new.example`)", "service": "whoami@internal"},
                        "bad": {"rule": "Host(`x`) &&", "service": "whoami@internal"},
                    }
                }
            },
            "test",
        ),
    )
    await aggregator.settled()
    assert len(swaps) == 1
    assert answers(aggregator.snapshot, "a.example") == "a@file"
    assert answers(aggregator.snapshot, "new.example") is None
    state = aggregator.providers["file"]
    assert state.refusals == 1
    assert state.last_error is not None and state.last_error.time == 1000.0
    assert state.last_error.issues[0].path == "http.routers.bad.rule"
    assert aggregator.counters.failures == 1
    assert aggregator.status()[0]["lastError"]["errors"][0]["path"] == "http.routers.bad.rule"
    # The next good update clears the error.
    aggregator.submit("file", routers("c.example"))
    await aggregator.settled()
    assert answers(aggregator.snapshot, "c.example") == "c@file"
    assert state.last_error is None
    await aggregator.close()


async def test_a_decoding_error_is_refused_and_counted() -> None:
    aggregator, swaps = make()
    aggregator.start({"file": routers("a.example")})
    error = ConfigError([ConfigIssue("dynamic.toml", "line 3", "Expected '=' (column 5)")])
    aggregator.submit("file", error)
    await aggregator.settled()
    assert len(swaps) == 1
    assert aggregator.providers["file"].last_error.issues == tuple(error.issues)
    await aggregator.close()


async def test_a_burst_is_coalesced_to_its_newest_update() -> None:
    aggregator, swaps = make(throttle=0.2)
    aggregator.start({"file": routers("a.example")})
    for index in range(20):
        aggregator.submit("file", routers(f"r{index}.example"))
        await asyncio.sleep(0.005)
    await aggregator.settled()
    # The first change applies at once, the rest of the burst as its newest only.
    assert len(swaps) == 3
    assert answers(aggregator.snapshot, "r19.example") == "r19@file"
    assert answers(aggregator.snapshot, "r0.example") is None
    await aggregator.close()


async def test_a_reference_to_a_provider_not_yet_loaded_applies_once_it_arrives() -> None:
    aggregator, _ = make()
    aggregator.start({})
    aggregator.submit("file", routers("a.example", service="shared@redis"))
    await aggregator.settled()
    assert aggregator.providers["file"].pending is not None
    assert answers(aggregator.snapshot, "a.example") is None
    aggregator.submit(
        "redis",
        decode_dynamic(
            {"http": {"services": {"shared": {"loadBalancer": {"servers": []}}}}}, "test"
        ),
    )
    await aggregator.settled()
    assert answers(aggregator.snapshot, "a.example") == "a@file"
    assert aggregator.providers["file"].pending is None
    assert aggregator.providers["file"].last_error is None
    await aggregator.close()


async def test_removing_a_service_another_provider_uses_is_refused() -> None:
    aggregator, _ = make()
    shared = decode_dynamic(
        {"http": {"services": {"shared": {"loadBalancer": {"servers": []}}}}}, "test"
    )
    aggregator.start({"file": routers("a.example", service="shared@redis"), "redis": shared})
    aggregator.submit("redis", decode_dynamic({}, "test"))
    await aggregator.settled()
    assert answers(aggregator.snapshot, "a.example") == "a@file"
    issues = aggregator.providers["redis"].last_error.issues
    assert [str(i) for i in issues] == [
        "dynamic.toml: http.routers.a.service: unknown service 'shared@redis'"
    ]
    await aggregator.close()


async def test_check_is_a_dry_run() -> None:
    aggregator, swaps = make()
    aggregator.start({"file": routers("a.example")})
    _snapshot, issues = aggregator.check("file", routers("b.example", service="nope"))
    assert [i.message for i in issues] == ["unknown service 'nope'"]
    assert len(swaps) == 1
    assert answers(aggregator.snapshot, "a.example") == "a@file"


@pytest.mark.parametrize("count", [1000])
async def test_a_large_build_does_not_stall_the_loop(count: int) -> None:
    aggregator, _ = make(throttle=0)
    aggregator.start({})
    hosts = [f"h{index}.example" for index in range(count)]
    aggregator.submit("file", routers(*hosts))
    ticks = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while aggregator.snapshot is None or answers(aggregator.snapshot, hosts[-1]) is None:
        ticks += 1
        await asyncio.sleep(0.001)
        assert loop.time() < deadline
    # The build ran on the worker thread: the loop kept turning meanwhile.
    assert ticks > 1
    await aggregator.close()
