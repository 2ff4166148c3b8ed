"""Redis and etcd changes reaching routing in a real ``turnout run``, across server restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.providers.servers import EtcdServer, RedisServer
from tests.runtime.support import Load, NamedBackend, TurnoutProcess, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def backends() -> Iterator[dict[str, NamedBackend]]:
    started = {name: NamedBackend(name) for name in ("alpha", "beta")}
    yield started
    for backend in started.values():
        backend.stop()


def seed(put, backends: dict[str, NamedBackend]) -> None:  # type: ignore[no-untyped-def]
    put("traefik/http/routers/app/rule", "Host(`app.example`)")
    put("traefik/http/routers/app/service", "alpha")
    for name, backend in backends.items():
        put(f"traefik/http/services/{name}/loadBalancer/servers/0/url", backend.url)


def follow_through_restart(proxy: TurnoutProcess, server, put) -> None:  # type: ignore[no-untyped-def]
    try:
        _follow(proxy, server, put)
    finally:
        code = proxy.stop()
    assert code == 0, proxy.stderr()


def _follow(proxy: TurnoutProcess, server, put) -> None:  # type: ignore[no-untyped-def]
    with Load(proxy.port) as load:
        assert wait_until(lambda: proxy.body() == "alpha", 5), proxy.stderr()
        put("traefik/http/routers/app/service", "beta")
        assert wait_until(lambda: proxy.body() == "beta", 1.0), proxy.stderr()
        # A bad value is refused whole; the routing stays.
        put("traefik/http/routers/app/rule", "Host(`app.example`")
        assert wait_until(lambda: proxy.count("refused") == 1, 2), proxy.stderr()
        assert proxy.body() == "beta"
        put("traefik/http/routers/app/rule", "Host(`app.example`)")
        # The server goes away: routing stays on the last good configuration.
        server.stop()
        assert wait_until(lambda: "stays live" in proxy.stderr(), 5), proxy.stderr()
        assert proxy.body() == "beta"
        server.start()
        put("traefik/http/routers/app/service", "alpha")
        assert wait_until(lambda: proxy.body() == "alpha", 10), proxy.stderr()
    assert load.failures == [], load.failures[:5]


def test_redis_changes_reach_routing(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    redis = RedisServer(tmp_path / "redis").start()
    try:
        seed(redis.set, backends)
        proxy = TurnoutProcess(
            tmp_path, f'[providers.redis]\nendpoints = ["127.0.0.1:{redis.port}"]\n'
        ).start()
        follow_through_restart(proxy, redis, redis.set)
    finally:
        redis.stop()


def test_etcd_changes_reach_routing(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    etcd = EtcdServer(tmp_path / "etcd").start()
    try:
        seed(etcd.put, backends)
        proxy = TurnoutProcess(
            tmp_path, f'[providers.etcd]\nendpoints = ["127.0.0.1:{etcd.port}"]\n'
        ).start()
        follow_through_restart(proxy, etcd, etcd.put)
    finally:
        etcd.stop()


def test_a_file_router_can_use_a_redis_service(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    redis = RedisServer(tmp_path / "redis").start()
    try:
        redis.set("traefik/http/services/shared/loadBalancer/servers/0/url", backends["beta"].url)
        dynamic = tmp_path / "dynamic.toml"
        dynamic.write_text(
            '[http.routers.app]\nrule = "Host(`app.example`)"\nservice = "shared@redis"\n'
        )
        proxy = TurnoutProcess(
            tmp_path,
            f'[providers.file]\nfilename = "{dynamic}"\n'
            f'[providers.redis]\nendpoints = ["127.0.0.1:{redis.port}"]\n',
        ).start()
        try:
            assert proxy.body() == "beta"
        finally:
            assert proxy.stop() == 0, proxy.stderr()
    finally:
        redis.stop()
