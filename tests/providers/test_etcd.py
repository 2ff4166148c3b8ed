"""The etcd provider against a real etcd server (v3 API): read, watch, survive a restart."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from proxy.config.load import ConfigError
from proxy.config.static import EtcdProvider as EtcdConfig
from proxy.providers.base import ProviderUnavailable
from proxy.providers.etcd import EtcdProvider

pytestmark = pytest.mark.timeout(60)


def seed(server, name: str = "web", host: str = "a.example") -> None:  # type: ignore[no-untyped-def]
    server.put(f"traefik/http/routers/{name}/rule", f"Host(`{host}`)")
    server.put(f"traefik/http/routers/{name}/service", "app")
    server.put("traefik/http/services/app/loadBalancer/servers/0/url", "http://127.0.0.1:9")


def provider_for(server) -> EtcdProvider:  # type: ignore[no-untyped-def]
    return EtcdProvider(EtcdConfig(endpoints=[f"127.0.0.1:{server.port}"]))


@contextlib.asynccontextmanager
async def watching(provider, recorder):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(provider.watch(recorder))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_fetch_reads_the_prefix(etcd_server) -> None:
    seed(etcd_server)
    etcd_server.put("traefikx/http/routers/x/rule", "Host(`x`)")  # not under traefik/
    config = await provider_for(etcd_server).fetch()
    assert set(config.http.routers) == {"web"}
    assert config.http.services["app"].load_balancer.servers[0].url == "http://127.0.0.1:9"


async def test_changes_are_followed_with_a_watch(etcd_server, recorder) -> None:
    seed(etcd_server)
    provider = provider_for(etcd_server)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        etcd_server.put("traefik/http/routers/web/rule", "Host(`b.example`)")
        await recorder.wait_for(lambda: recorder.routers()["web"].rule == "Host(`b.example`)", 2)
        seed(etcd_server, "second", "c.example")
        await recorder.wait_for(lambda: "second" in recorder.routers(), 2)
        etcd_server.delete("traefik/http/routers/second/rule")
        etcd_server.delete("traefik/http/routers/second/service")
        await recorder.wait_for(lambda: "second" not in recorder.routers(), 2)
        etcd_server.put("traefik/http/routers/web/priority", "high")
        await recorder.wait_for(lambda: isinstance(recorder.updates[-1], ConfigError), 2)
        assert "http.routers.web.priority: expected an integer" in str(recorder.updates[-1])


async def test_a_restart_is_survived_and_resynchronised(etcd_server, recorder) -> None:
    seed(etcd_server)
    provider = provider_for(etcd_server)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        etcd_server.stop()
        await recorder.wait_for(lambda: recorder.unreachable_messages, 5)
        assert len(recorder.updates) == 1
        etcd_server.start()
        etcd_server.put("traefik/http/routers/web/rule", "Host(`after.example`)")
        await recorder.wait_for(
            lambda: recorder.routers()["web"].rule == "Host(`after.example`)", 10
        )


async def test_an_unreachable_endpoint(etcd_server) -> None:
    from tests.runtime.support import free_port

    seed(etcd_server)
    dead = free_port()
    both = EtcdProvider(
        EtcdConfig(endpoints=[f"127.0.0.1:{dead}", f"127.0.0.1:{etcd_server.port}"])
    )
    assert set((await both.fetch()).http.routers) == {"web"}
    with pytest.raises(ProviderUnavailable):
        await EtcdProvider(EtcdConfig(endpoints=[f"127.0.0.1:{dead}"])).fetch()
