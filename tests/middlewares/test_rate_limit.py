"""rateLimit through a real turnout: token buckets per source, delays, 429, Redis sharing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.middlewares.rate_limit import MAX_SOURCES, Limits, RateLimitHandler, go_duration
from proxy.middlewares.source_criterion import client_ip
from tests.integration.harness import Backend, Turnout, free_port, get, wait_until
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_backend_fixture,
    module_proxy_fixture,
    redis_server_fixture,
    service,
)
from tests.providers.servers import RedisServer

SLOW = 'average = 1\nperiod = "10s"\n'  # one request, then 429 for the rest of the test

MIDDLEWARES = f"""
[http.middlewares.zero.rateLimit]
average = 0
burst = 1
[http.middlewares.burst.rateLimit]
average = 5
burst = 3
[http.middlewares.period.rateLimit]
average = 1
period = "2s"
[http.middlewares.late.rateLimit]
average = 2
[http.middlewares.header.rateLimit]
{SLOW}
[http.middlewares.header.rateLimit.sourceCriterion]
requestHeaderName = "X-Tenant"
[http.middlewares.host.rateLimit]
{SLOW}
[http.middlewares.host.rateLimit.sourceCriterion]
requestHost = true
[http.middlewares.depth.rateLimit]
{SLOW}
[http.middlewares.depth.rateLimit.sourceCriterion.ipStrategy]
depth = 2
[http.middlewares.excl.rateLimit]
{SLOW}
[http.middlewares.excl.rateLimit.sourceCriterion.ipStrategy]
excludedIPs = ["10.0.0.0/8"]
"""


@pytest.fixture(scope="module")
def proxy(module_backend: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    routers = [host_router(n, [n]) for n in ("zero", "burst", "period", "late", "header")]
    routers += [host_router(n, [n]) for n in ("depth", "excl")]
    routers.append(host_router("host", ["host"], "PathPrefix(`/by-host`)"))
    routers.append(host_router("period2", ["period"]))
    return module_proxy(
        MIDDLEWARES + "".join(routers) + service(module_backend.url),
        entrypoint_extra="forwardedHeaders.insecure = true",
    )


def statuses(port: int, count: int, host: str, headers: str = "", path: str = "/") -> list[int]:
    return [get(port, path, host=host, headers=headers).status for _ in range(count)]


def test_average_zero_means_no_limit(proxy: Turnout) -> None:
    assert statuses(proxy.port, 30, "zero.test") == [200] * 30


def test_burst_then_429_with_retry_after(proxy: Turnout) -> None:
    # 5 per second: a token every 200 ms; waits up to 100 ms are served late.
    assert statuses(proxy.port, 3, "burst.test") == [200, 200, 200]
    refused = get(proxy.port, host="burst.test")
    assert refused.status == 429
    assert refused.header("Retry-After") == "1"
    retry_in = refused.header("X-Retry-In")
    assert retry_in is not None and retry_in.endswith("ms"), retry_in
    assert 100 < float(retry_in[:-2]) <= 200
    assert refused.header("Content-Type") == "text/plain; charset=utf-8"
    assert refused.body == b"Too Many Requests"
    time.sleep(0.45)  # two tokens back
    assert statuses(proxy.port, 2, "burst.test") == [200, 200]


def test_default_burst_is_one_and_period_scales_the_rate(proxy: Turnout) -> None:
    # One request per 2 s: the second one at once would wait ~2 s, past maxDelay (0.5 s).
    assert get(proxy.port, host="period.test").status == 200
    refused = get(proxy.port, host="period.test")
    assert refused.status == 429
    assert refused.header("Retry-After") == "2"
    # Another router with the same middleware has buckets of its own, as in Traefik.
    assert get(proxy.port, host="period2.test").status == 200
    assert get(proxy.port, host="period2.test").status == 429


def test_a_short_wait_is_served_late_not_refused(proxy: Turnout, module_backend: Backend) -> None:
    # 2 per second: a token every 500 ms, maxDelay 250 ms.
    assert get(proxy.port, host="late.test").status == 200
    time.sleep(0.35)  # the next token is ~150 ms away: within maxDelay
    started = time.monotonic()
    assert get(proxy.port, host="late.test").status == 200
    assert time.monotonic() - started >= 0.1
    assert get(proxy.port, host="late.test").status == 429  # ~500 ms away


def test_request_header_source(proxy: Turnout) -> None:
    assert statuses(proxy.port, 2, "header.test", "X-Tenant: a\r\n") == [200, 429]
    assert statuses(proxy.port, 2, "header.test", "X-Tenant: b\r\n") == [200, 429]
    # No header: the empty source, a bucket of its own.
    assert statuses(proxy.port, 2, "header.test") == [200, 429]


def test_request_host_source(proxy: Turnout) -> None:
    assert statuses(proxy.port, 2, "a.example", path="/by-host") == [200, 429]
    assert statuses(proxy.port, 2, "b.example", path="/by-host") == [200, 429]
    # req.Host keeps the port: another source.
    assert statuses(proxy.port, 1, "a.example:80", path="/by-host") == [200]


def test_ip_strategy_depth_and_excluded_ips(proxy: Turnout) -> None:
    def status(host: str, xff: str) -> int:
        return get(proxy.port, host=host, headers=f"X-Forwarded-For: {xff}\r\n").status

    # depth 2: the second address from the right decides.
    assert status("depth.test", "1.1.1.1, 2.2.2.2, 9.9.9.9") == 200
    assert status("depth.test", "3.3.3.3, 2.2.2.2, 8.8.8.8") == 429
    assert status("depth.test", "3.3.3.3, 4.4.4.4, 8.8.8.8") == 200
    # excludedIPs: the right-most address outside 10/8.
    assert status("excl.test", "5.5.5.5, 10.1.1.1") == 200
    assert status("excl.test", "5.5.5.5, 10.2.2.2, 10.3.3.3") == 429
    assert status("excl.test", "6.6.6.6, 10.1.1.1") == 200


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    dynamic = """
[http.middlewares.neg.rateLimit]
average = -1
[http.middlewares.per.rateLimit]
period = "-1s"
[http.middlewares.ips.rateLimit.sourceCriterion.ipStrategy]
excludedIPs = ["10.0.0.0/8", "not-an-ip"]
[http.middlewares.red.rateLimit]
average = 5
[http.middlewares.red.rateLimit.redis]
endpoints = ["nohostport"]
"""
    code, output = check(tmp_path, dynamic)
    assert code != 0
    assert "http.middlewares.neg.rateLimit.average: average must not be negative" in output
    assert "http.middlewares.per.rateLimit.period: negative value not valid" in output
    assert (
        "http.middlewares.ips.rateLimit.sourceCriterion.ipStrategy.excludedIPs[1]: "
        "invalid IP or CIDR 'not-an-ip'" in output
    )
    assert "http.middlewares.red.rateLimit.redis.endpoints[0]: expected HOST:PORT" in output


def test_limits_follow_traefik() -> None:
    fast = Limits(100, 1.0, 0)
    assert (fast.rate, fast.burst, fast.max_delay, fast.ttl) == (100.0, 1, 0.005, 2)
    slow = Limits(1, 4.0, 1)
    assert (slow.rate, slow.max_delay, slow.ttl) == (0.25, 0.5, 5)
    assert go_duration(1_500_000_000) == "1.5s"
    assert go_duration(250_000_000) == "250ms"
    assert go_duration(61_500_000_000) == "1m1.5s"


def test_stale_buckets_expire_and_memory_is_bounded() -> None:
    handler = RateLimitHandler("rl", Limits(10, 1.0, 1), client_ip)
    for index in range(1000):
        handler.reserve(f"10.0.{index // 256}.{index % 256}", 100.0)
    assert len(handler.buckets) == 1000
    handler.reserve("fresh", 102.5)  # past the 2 s ttl: every other bucket goes
    assert list(handler.buckets) == ["fresh"]
    # A bucket that expired starts full again, as a new source does.
    assert handler.reserve("fresh", 105.0) == 0.0


def test_at_most_max_sources_are_kept_the_least_recently_seen_going_first() -> None:
    handler = RateLimitHandler("rl", Limits(10, 1.0, 1), client_ip)
    for index in range(MAX_SOURCES):
        handler.reserve(index, 100.0)
    handler.reserve(0, 100.5)  # seen again: now the most recent
    handler.reserve("new", 100.6)  # none expired: the least recently seen (1) goes
    assert len(handler.buckets) == MAX_SOURCES
    assert 1 not in handler.buckets and 0 in handler.buckets and 2 in handler.buckets
    assert list(handler.buckets)[-2:] == [0, "new"]


def redis_limited(backend_url: str, redis_port: int, extra: str = "") -> str:
    return (
        "[http.middlewares.rl.rateLimit]\naverage = 10\nburst = 5\n"
        f'[http.middlewares.rl.rateLimit.redis]\nendpoints = ["127.0.0.1:{redis_port}"]\n{extra}'
        + host_router("app", ["rl"], "PathPrefix(`/`)")
        + service(backend_url)
    )


def test_redis_limit_is_shared_by_two_instances(
    module_backend: Backend, module_proxy: Callable[..., Turnout], redis_server
) -> None:
    first = module_proxy(redis_limited(module_backend.url, redis_server.port))
    second = module_proxy(redis_limited(module_backend.url, redis_server.port))
    before = len(module_backend.requests)
    admitted = [0, 0]
    refused = [0]
    lock = threading.Lock()
    stop = time.monotonic() + 1.0

    def hammer(index: int, port: int) -> None:
        while time.monotonic() < stop:
            status = get(port).status
            with lock:
                if status == 200:
                    admitted[index] += 1
                else:
                    assert status == 429, status
                    refused[0] += 1

    threads = [
        threading.Thread(target=hammer, args=(index % 2, (first, second)[index % 2].port))
        for index in range(4)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(admitted)
    # One shared bucket: burst + rate * time, plus one burst of slack (tokens
    # reserved for waits at the very end); two separate buckets would allow twice that.
    assert total <= 5 + 10 * elapsed + 5, (admitted, elapsed)
    assert admitted[0] >= 2 and admitted[1] >= 2, admitted
    assert refused[0] > total
    assert len(module_backend.requests) - before == total
    assert redis_server.command("EXISTS", "turnout:ratelimit:rl@file:app@file:127.0.0.1") == "1"


def test_redis_unreachable_answers_500(
    module_backend: Backend, module_proxy: Callable[..., Turnout]
) -> None:
    proxy = module_proxy(redis_limited(module_backend.url, free_port(), 'dialTimeout = "1s"\n'))
    before = len(module_backend.requests)
    response = get(proxy.port)
    assert response.status == 500
    assert len(module_backend.requests) == before


def test_redis_username_password_and_db(
    module_backend: Backend, module_proxy: Callable[..., Turnout], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret").start()
    try:
        extra = 'username = "default"\npassword = "s3cret"\ndb = 2\n'
        good = module_proxy(redis_limited(module_backend.url, server.port, extra))
        assert get(good.port).status == 200
        found = server.command(
            "EVAL",
            "redis.call('SELECT', 2) return redis.call('EXISTS', KEYS[1])",
            "1",
            "turnout:ratelimit:rl@file:app@file:127.0.0.1",
        )
        assert found == "1"
        wrong = module_proxy(redis_limited(module_backend.url, server.port, 'password = "wrong"\n'))
        assert get(wrong.port).status == 500
    finally:
        server.stop()


def test_redis_limit_survives_a_reload(
    module_backend: Backend, module_proxy: Callable[..., Turnout], redis_server
) -> None:
    proxy = module_proxy(redis_limited(module_backend.url, redis_server.port))
    assert get(proxy.port).status == 200
    # A changed limit builds a new handler and client; the old client is let go quietly.
    changed = redis_limited(module_backend.url, redis_server.port).replace(
        "average = 10\nburst = 5", 'average = 1\nperiod = "10s"\nburst = 1'
    )
    temporary = proxy.dynamic_path.with_suffix(".new")
    temporary.write_text(changed)
    temporary.replace(proxy.dynamic_path)

    def limited_now() -> bool:
        return get(proxy.port, headers="X-Probe: 1\r\n").status == 429

    assert wait_until(limited_now, 5), proxy.stderr()[-2000:]
    assert "Unclosed" not in proxy.stderr() and "Traceback" not in proxy.stderr()
