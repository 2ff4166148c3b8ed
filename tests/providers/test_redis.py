"""The Redis provider against a real redis-server: read, follow, survive a restart."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from proxy.config.load import ConfigError
from proxy.config.static import RedisProvider as RedisConfig
from proxy.providers.base import ProviderUnavailable
from proxy.providers.redis import RedisProvider

pytestmark = pytest.mark.timeout(60)


def seed(server, name: str = "web", host: str = "a.example") -> None:  # type: ignore[no-untyped-def]
    server.set(f"traefik/http/routers/{name}/rule", f"Host(`{host}`)")
    server.set(f"traefik/http/routers/{name}/service", "app")
    server.set("traefik/http/services/app/loadBalancer/servers/0/url", "http://127.0.0.1:9")


def provider_for(server, **options) -> RedisProvider:  # type: ignore[no-untyped-def]
    return RedisProvider(RedisConfig(endpoints=[f"127.0.0.1:{server.port}"], **options))


@contextlib.asynccontextmanager
async def watching(provider, recorder):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(provider.watch(recorder))
    try:
        yield task
    finally:
        await provider.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_fetch_reads_every_key_under_the_root(redis_server) -> None:
    seed(redis_server)
    redis_server.set("elsewhere/http/routers/x/rule", "Host(`x`)")
    config = await provider_for(redis_server).fetch()
    assert set(config.http.routers) == {"web"}
    assert config.http.routers["web"].rule == "Host(`a.example`)"
    assert config.http.services["app"].load_balancer.servers[0].url == "http://127.0.0.1:9"


async def test_changes_are_followed_with_keyspace_notifications(redis_server, recorder) -> None:
    seed(redis_server)
    provider = provider_for(redis_server)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        assert redis_server.command("CONFIG", "GET", "notify-keyspace-events")[1] != ""
        redis_server.set("traefik/http/routers/web/rule", "Host(`b.example`)")
        await recorder.wait_for(lambda: recorder.routers()["web"].rule == "Host(`b.example`)", 2)
        seed(redis_server, "second", "c.example")
        await recorder.wait_for(lambda: "second" in recorder.routers(), 2)
        redis_server.delete(
            "traefik/http/routers/second/rule", "traefik/http/routers/second/service"
        )
        await recorder.wait_for(lambda: "second" not in recorder.routers(), 2)
        # Bad content is handed on as its error, to be refused by the aggregator.
        redis_server.set("traefik/http/routers/web/rul", "Host(`x`)")
        await recorder.wait_for(lambda: isinstance(recorder.updates[-1], ConfigError), 2)
        assert "http.routers.web.rul: unknown key" in str(recorder.updates[-1])


async def test_a_restart_is_survived_and_resynchronised(redis_server, recorder) -> None:
    seed(redis_server)
    provider = provider_for(redis_server)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        redis_server.stop()
        await recorder.wait_for(lambda: recorder.unreachable_messages, 5)
        assert len(recorder.updates) == 1  # nothing is handed on while Redis is away
        redis_server.start()
        # Back with the same data: the re-read changes nothing, so nothing is handed on;
        # a change made after the restart is followed.
        redis_server.set("traefik/http/routers/web/rule", "Host(`after.example`)")
        await recorder.wait_for(
            lambda: recorder.routers()["web"].rule == "Host(`after.example`)", 10
        )


async def test_a_change_made_while_the_subscription_was_lost_is_seen(
    redis_server, recorder
) -> None:
    seed(redis_server)
    provider = provider_for(redis_server)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        # Another client kills the provider's connections: it reconnects and re-reads.
        redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
        redis_server.set("traefik/http/routers/web/rule", "Host(`during.example`)")
        await recorder.wait_for(
            lambda: recorder.routers()["web"].rule == "Host(`during.example`)", 5
        )


async def test_password_and_db(tmp_path) -> None:
    from tests.providers.servers import RedisServer

    server = RedisServer(tmp_path / "auth", password="s3cret").start()
    try:
        server.command(
            "MSET",
            "traefik/http/routers/r/rule",
            "Host(`x`)",
            "traefik/http/routers/r/service",
            "s",
        )
        good = RedisProvider(
            RedisConfig(endpoints=[f"127.0.0.1:{server.port}"], password="s3cret", db=0)
        )
        assert set((await good.fetch()).http.routers) == {"r"}
        empty = RedisProvider(
            RedisConfig(endpoints=[f"127.0.0.1:{server.port}"], password="s3cret", db=2)
        )
        assert (await empty.fetch()).http.routers == {}
        bad = RedisProvider(RedisConfig(endpoints=[f"127.0.0.1:{server.port}"], password="wrong"))
        with pytest.raises(ProviderUnavailable):
            await bad.fetch()
    finally:
        server.stop()


async def test_unreachable_endpoints_are_reported_then_the_next_endpoint_is_used(
    redis_server,
) -> None:
    from tests.runtime.support import free_port

    seed(redis_server)
    dead = free_port()
    provider = RedisProvider(
        RedisConfig(endpoints=[f"127.0.0.1:{dead}", f"127.0.0.1:{redis_server.port}"])
    )
    assert set((await provider.fetch()).http.routers) == {"web"}
    with pytest.raises(ProviderUnavailable):
        await RedisProvider(RedisConfig(endpoints=[f"127.0.0.1:{dead}"])).fetch()
