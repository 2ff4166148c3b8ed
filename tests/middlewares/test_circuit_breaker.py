"""circuitBreaker through a real turnout: standby -> tripped -> recovering -> standby."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.middlewares.circuit_breaker import Metrics, parse_expression
from tests.integration.harness import Backend, Received, Turnout, free_port, get, ok_response
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    service,
)

MODE = {"fail": False}


async def respond(received: Received) -> bytes:
    if received.target == "/slow":
        await asyncio.sleep(0.15)
    if MODE["fail"]:
        return b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
    return ok_response()


@pytest.fixture(scope="module")
def app() -> Iterator[Backend]:
    server = Backend(responder=respond).start()
    yield server
    server.stop()


MIDDLEWARES = """
[http.middlewares.codes.circuitBreaker]
expression = "ResponseCodeRatio(500, 600, 0, 600) > 0.5"
checkPeriod = "50ms"
fallbackDuration = "1s"
recoveryDuration = "1s"
[http.middlewares.net.circuitBreaker]
expression = "NetworkErrorRatio() > 0.5"
responseCode = 418
[http.middlewares.slow.circuitBreaker]
expression = "LatencyAtQuantileMS(50.0) > 100 || NetworkErrorRatio() > 0.9"
checkPeriod = "10ms"
"""


@pytest.fixture(scope="module")
def proxy(app: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    routers = host_router("codes", ["codes"]) + host_router("slow", ["slow"])
    routers += host_router("net", ["net"]).replace('service = "app"', 'service = "dead"')
    routers += host_router("net2", ["net"])  # the same middleware, a healthy service
    dead = service(f"http://127.0.0.1:{free_port()}", "dead")
    return module_proxy(MIDDLEWARES + routers + service(app.url) + dead)


def status(proxy: Turnout, host: str, path: str = "/") -> int:
    return get(proxy.port, path, host=f"{host}.test").status


def test_trips_on_response_codes_then_recovers(proxy: Turnout, app: Backend) -> None:
    assert [status(proxy, "codes") for _ in range(5)] == [200] * 5
    MODE["fail"] = True
    try:
        seen = [status(proxy, "codes") for _ in range(8)]
        deadline = time.monotonic() + 3
        while seen[-1] != 503 and time.monotonic() < deadline:
            seen.append(status(proxy, "codes"))
        assert seen[-1] == 503, seen
        tripped_at = time.monotonic()
        assert set(seen[:-1]) <= {500, 503}
    finally:
        MODE["fail"] = False
    # Open: the fallback answers, the service is not called.
    before = len(app.requests)
    fallback = get(proxy.port, host="codes.test")
    assert (fallback.status, fallback.body) == (503, b"Service Unavailable")
    assert [status(proxy, "codes") for _ in range(5)] == [503] * 5
    assert len(app.requests) == before
    # Recovering (after fallbackDuration): a growing share gets through.
    time.sleep(max(0.0, tripped_at + 1.05 - time.monotonic()))
    during = []
    while time.monotonic() < tripped_at + 1.9:
        during.append(status(proxy, "codes"))
        time.sleep(0.01)
    assert 200 in during and 503 in during, during
    assert during.index(200) > 0  # the ramp starts closed
    # Standby again after recoveryDuration.
    time.sleep(max(0.0, tripped_at + 2.1 - time.monotonic()))
    assert [status(proxy, "codes") for _ in range(10)] == [200] * 10


def test_network_errors_trip_with_the_configured_code(proxy: Turnout) -> None:
    seen = [status(proxy, "net") for _ in range(3)]
    assert seen[0] == 502  # Turnout's own 502 counts as a network error
    assert seen[-1] == 418, seen
    # Another router with the same middleware has a breaker of its own, as in Traefik.
    assert [status(proxy, "net2") for _ in range(3)] == [200] * 3


def test_latency_quantile(proxy: Turnout) -> None:
    # Fast answers keep the median low; the check runs after each (checkPeriod 10 ms).
    for _ in range(2):
        assert status(proxy, "slow") == 200
        time.sleep(0.015)
    assert status(proxy, "slow", "/slow") == 200  # 1 of 3 slow
    time.sleep(0.015)
    assert status(proxy, "slow", "/slow") == 200  # 2 of 4: the median is still fast
    time.sleep(0.015)
    assert status(proxy, "slow", "/slow") == 200  # 3 of 5: the median is slow, it trips
    assert status(proxy, "slow") == 503


def test_expressions() -> None:
    metrics = Metrics()
    now = 1000.0
    for code in (200, 200, 500, 502):
        metrics.record(code, 0.01 if code == 200 else 0.3, now)
    metrics.record(0, 0.5, now)
    assert metrics.network_error_ratio(now) == pytest.approx(0.4)
    assert metrics.response_code_ratio(now, 500, 600, 0, 600) == pytest.approx(0.5)
    assert metrics.latency_at_quantile_ms(now, 50.0) == pytest.approx(300.0)
    assert parse_expression("NetworkErrorRatio() > 0.3 && LatencyAtQuantileMS(99) >= 500")(
        metrics, now
    )
    assert not parse_expression("NetworkErrorRatio() > 0.5 && LatencyAtQuantileMS(99) > 1")(
        metrics, now
    )
    assert parse_expression(
        "(NetworkErrorRatio() > 0.5 || ResponseCodeRatio(500, 600, 0, 600) == 0.5)"
    )(metrics, now)
    # Measures older than the 10 s window are forgotten.
    assert metrics.network_error_ratio(now + 10) == 0.0


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        """
[http.middlewares.empty.circuitBreaker]
[http.middlewares.func.circuitBreaker]
expression = "Errors() > 1"
[http.middlewares.args.circuitBreaker]
expression = "ResponseCodeRatio(500, 600) > 0.5"
[http.middlewares.code.circuitBreaker]
expression = "NetworkErrorRatio() > 0.5"
responseCode = 99
[http.middlewares.neg.circuitBreaker]
expression = "NetworkErrorRatio() > 0.5"
fallbackDuration = "-1s"
""",
    )
    assert code != 0
    assert "http.middlewares.empty.circuitBreaker.expression: empty expression" in output
    assert "http.middlewares.func.circuitBreaker.expression: unknown function 'Errors'" in output
    assert "http.middlewares.args.circuitBreaker.expression: ResponseCodeRatio takes 4" in output
    assert "http.middlewares.code.circuitBreaker.responseCode: must be an HTTP status" in output
    assert "http.middlewares.neg.circuitBreaker.fallbackDuration: must not be negative" in output
