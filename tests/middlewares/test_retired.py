"""Handlers a new configuration drops are closed, once no request still runs through them.

Observed from the outside: the Redis connections of a distributed rateLimit
(``CLIENT LIST`` on a real redis-server) go away when the middleware is
removed, but not while a request that started before the change is running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from tests.integration.harness import Backend, Received, Turnout, get, ok_response, wait_until
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    module_backend_fixture,
    module_proxy_fixture,
    redis_server_fixture,
    service,
)
from tests.providers.servers import RedisServer


def clients(redis: RedisServer) -> int:
    """Connections to redis-server other than the one asking."""
    listing = redis.command("CLIENT", "LIST")
    assert isinstance(listing, str)
    return len([line for line in listing.splitlines() if line.strip()]) - 1


def limited(backend_url: str, redis_port: int) -> str:
    return (
        "[http.middlewares.rl.rateLimit]\naverage = 1000\nburst = 1000\n"
        f'[http.middlewares.rl.rateLimit.redis]\nendpoints = ["127.0.0.1:{redis_port}"]\n'
        '[http.routers.r]\nrule = "PathPrefix(`/`)"\nservice = "app"\nmiddlewares = ["rl"]\n'
        + service(backend_url)
    )


def unlimited(backend_url: str) -> str:
    return '[http.routers.r]\nrule = "PathPrefix(`/`)"\nservice = "app"\n' + service(backend_url)


def replace_config(proxy: Turnout, text: str) -> None:
    temporary = proxy.dynamic_path.with_suffix(".new")
    temporary.write_text(text)
    temporary.replace(proxy.dynamic_path)


def test_removed_redis_rate_limit_closes_its_connections(
    module_backend: Backend, module_proxy: Callable[..., Turnout], redis_server: RedisServer
) -> None:
    assert clients(redis_server) == 0
    proxy = module_proxy(limited(module_backend.url, redis_server.port))
    for _ in range(3):
        assert get(proxy.port).status == 200
    assert clients(redis_server) >= 1  # the handler's client connected on first use

    replace_config(proxy, unlimited(module_backend.url))
    assert wait_until(lambda: clients(redis_server) == 0, 5), proxy.stderr()[-2000:]
    assert get(proxy.port).status == 200
    stderr = proxy.stderr()
    assert "closing failed" not in stderr and "Traceback" not in stderr


def test_a_request_in_flight_keeps_the_old_handler_until_it_ends(
    module_proxy: Callable[..., Turnout], redis_server: RedisServer
) -> None:
    release = threading.Event()

    async def slow(request: Received) -> bytes:
        if request.target == "/slow":
            while not release.is_set():
                await asyncio.sleep(0.02)
        return ok_response(b"done")

    backend = Backend(responder=slow).start()
    try:
        proxy = module_proxy(limited(backend.url, redis_server.port))
        assert get(proxy.port).status == 200
        results: list[int] = []
        slow_request = threading.Thread(
            target=lambda: results.append(get(proxy.port, "/slow").status)
        )
        slow_request.start()
        assert wait_until(lambda: any(r.target == "/slow" for r in backend.requests), 5)

        replace_config(proxy, unlimited(backend.url))
        assert wait_until(lambda: "configuration applied" in proxy.stderr(), 5), proxy.stderr()
        # The new configuration is live (a request no longer creates a bucket)...
        redis_server.command("FLUSHALL")
        assert get(proxy.port).status == 200
        assert redis_server.command("DBSIZE") == "0"
        time.sleep(0.6)  # a few sweeps of the instance's tick
        # ...yet the request that started on the old one still holds its handler.
        assert clients(redis_server) >= 1
        release.set()
        slow_request.join(5)
        assert results == [200]
        assert wait_until(lambda: clients(redis_server) == 0, 5), proxy.stderr()[-2000:]
    finally:
        release.set()
        backend.stop()


def test_shutdown_closes_live_handlers(
    module_backend: Backend, module_proxy: Callable[..., Turnout], redis_server: RedisServer
) -> None:
    proxy = module_proxy(limited(module_backend.url, redis_server.port))
    assert get(proxy.port).status == 200
    assert clients(redis_server) >= 1
    assert proxy.stop() == 0
    assert clients(redis_server) == 0
    assert "closing failed" not in proxy.stderr()
