"""The consulCatalog provider against a stand-in of Consul's HTTP API (see consul_standin.py).

Consul itself cannot be installed from the registries this project reaches;
the stand-in implements the catalog and health endpoints and the blocking
query protocol from Consul's public API documentation.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from proxy.config.load import ConfigError
from proxy.config.static import ConsulCatalogEndpoint
from proxy.config.static import ConsulCatalogProvider as ConsulConfig
from proxy.providers.consul_catalog import (
    ConsulCatalogProvider,
    Instance,
    build_configuration,
    constraint_matcher,
    default_rule_renderer,
)
from proxy.providers.labels import normalize
from tests.providers.consul_standin import ConsulStandIn

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def consul():  # type: ignore[no-untyped-def]
    server = await ConsulStandIn().start()
    yield server
    await server.stop()


def provider_for(consul: ConsulStandIn, **options) -> ConsulCatalogProvider:  # type: ignore[no-untyped-def]
    endpoint = ConsulCatalogEndpoint(address=consul.address, endpoint_wait_time=2)
    return ConsulCatalogProvider(ConsulConfig(endpoint=endpoint, **options))


@contextlib.asynccontextmanager
async def watching(provider, recorder):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(provider.watch(recorder))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def servers(recorder, service: str) -> list[str]:  # type: ignore[no-untyped-def]
    if not recorder.updates:
        return []
    config = recorder.updates[-1]
    assert not isinstance(config, ConfigError), config
    found = config.http.services.get(service)
    return [] if found is None else [s.url for s in found.load_balancer.servers]


# -- building from instances --------------------------------------------------------------

DEFAULTS = {
    "prefix": "traefik",
    "exposed_by_default": True,
    "default_rule": default_rule_renderer("Host(`{{ normalize .Name }}`)", "t"),
    "constraints": constraint_matcher("", "t"),
    "source": "consul",
}


def test_a_service_without_labels_gets_the_default_router_and_its_instances() -> None:
    config = build_configuration(
        {
            "web_app": [
                Instance("w1", "n1", "web_app", "10.0.0.1", 8080, ()),
                Instance("w2", "n2", "web_app", "10.0.0.2", 8080, ()),
            ]
        },
        **DEFAULTS,
    )
    assert config.http.routers["web-app"].rule == "Host(`web-app`)"
    assert config.http.routers["web-app"].service == "web-app"
    assert [s.url for s in config.http.services["web-app"].load_balancer.servers] == [
        "http://10.0.0.1:8080",
        "http://10.0.0.2:8080",
    ]


def test_labels_from_tags_shape_routers_and_servers() -> None:
    tags = (
        "traefik.http.routers.api.rule=Host(`api.example`)",
        "traefik.http.services.api-svc.loadbalancer.server.port=9000",
        "traefik.http.services.api-svc.loadbalancer.server.scheme=https",
        "unrelated-tag",
    )
    config = build_configuration(
        {"api": [Instance("a1", "n1", "api", "10.0.0.5", 8080, tags)]}, **DEFAULTS
    )
    assert config.http.routers["api"].service == "api-svc"
    assert [s.url for s in config.http.services["api-svc"].load_balancer.servers] == [
        "https://10.0.0.5:9000"
    ]


def test_exposed_by_default_enable_and_constraints() -> None:
    instances = {
        "on": [Instance("1", "n", "on", "10.0.0.1", 80, ("traefik.enable=true", "edge"))],
        "off": [Instance("2", "n", "off", "10.0.0.2", 80, ("traefik.enable=false", "edge"))],
        "quiet": [Instance("3", "n", "quiet", "10.0.0.3", 80, ("edge",))],
        "internal": [Instance("4", "n", "internal", "10.0.0.4", 80, ("traefik.enable=true",))],
    }
    options = {
        **DEFAULTS,
        "exposed_by_default": False,
        "constraints": constraint_matcher("Tag(`edge`) && !TagRegex(`^debug.*`)", "t"),
    }
    config = build_configuration(instances, **options)
    assert set(config.http.routers) == {"on"}


def test_instances_that_disagree_keep_the_majority_definition() -> None:
    old = ("traefik.http.routers.r.rule=Host(`old`)",)
    new = ("traefik.http.routers.r.rule=Host(`new`)",)
    config = build_configuration(
        {
            "s": [
                Instance("1", "n", "s", "10.0.0.1", 80, old),
                Instance("2", "n", "s", "10.0.0.2", 80, new),
                Instance("3", "n", "s", "10.0.0.3", 80, new),
            ]
        },
        **DEFAULTS,
    )
    assert config.http.routers["r"].rule == "Host(`new`)"
    assert len(config.http.services["s"].load_balancer.servers) == 3


def test_unsupported_default_rule_and_bad_constraints_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        default_rule_renderer("Host(`{{ .Labels.host }}`)", "static.toml")
    assert "providers.consulCatalog.defaultRule" in str(caught.value)
    assert default_rule_renderer("Host(`{{ .Name }}.example`)", "s")("a_b") == "Host(`a_b.example`)"
    with pytest.raises(ConfigError) as caught:
        constraint_matcher("Label(`a`, `b`)", "static.toml")
    assert "providers.consulCatalog.constraints" in str(caught.value)
    assert normalize("a.b") == "a-b"


# -- the live provider -------------------------------------------------------------------


async def test_fetch_reads_only_passing_instances(consul) -> None:
    await consul.register("web", "web-1", 8001, [])
    await consul.register("web", "web-2", 8002, [], status="critical")
    await consul.register("web", "web-3", 8003, [], status="warning")
    config = await provider_for(consul).fetch()
    assert [s.url for s in config.http.services["web"].load_balancer.servers] == [
        "http://127.0.0.1:8001"
    ]
    assert "consul" not in config.http.services  # Consul's own service has no instances here


async def test_the_catalog_is_followed_with_blocking_queries(consul, recorder) -> None:
    await consul.register("web", "web-1", 8001, ["traefik.http.routers.web.rule=Host(`w`)"])
    provider = provider_for(consul)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: servers(recorder, "web") == ["http://127.0.0.1:8001"])
        # Autoscaling: an instance joins, one fails its check, one leaves.
        await consul.register("web", "web-2", 8002, ["traefik.http.routers.web.rule=Host(`w`)"])
        await recorder.wait_for(lambda: len(servers(recorder, "web")) == 2, 2)
        await consul.set_status("web-1", "critical")
        await recorder.wait_for(lambda: servers(recorder, "web") == ["http://127.0.0.1:8002"], 2)
        await consul.set_status("web-1", "passing")
        await recorder.wait_for(lambda: len(servers(recorder, "web")) == 2, 2)
        await consul.deregister("web-2")
        await recorder.wait_for(lambda: servers(recorder, "web") == ["http://127.0.0.1:8001"], 2)
        # A new service appears with its router; a removed one disappears.
        await consul.register("api", "api-1", 9001, [])
        await recorder.wait_for(lambda: "api" in recorder.updates[-1].http.routers, 2)
        await consul.deregister("api-1")
        await recorder.wait_for(lambda: "api" not in recorder.updates[-1].http.routers, 2)
    # Blocking queries were used: every follow-up request carried an index.
    assert any("index=" in target for target in consul.requests)


async def test_bad_tags_are_handed_on_as_an_error(consul, recorder) -> None:
    await consul.register("web", "web-1", 8001, [])
    provider = provider_for(consul)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        await consul.register("bad", "bad-1", 8002, ["traefik.http.routers.x.rul=Host(`x`)"])
        await recorder.wait_for(lambda: isinstance(recorder.updates[-1], ConfigError), 2)
        assert "http.routers.x.rul: unknown key" in str(recorder.updates[-1])


async def test_consul_going_away_and_coming_back(recorder) -> None:
    consul = await ConsulStandIn().start()
    port = consul.port
    await consul.register("web", "web-1", 8001, [])
    provider = provider_for(consul)
    async with watching(provider, recorder):
        await recorder.wait_for(lambda: len(recorder.updates) == 1)
        await consul.stop()
        await recorder.wait_for(lambda: recorder.unreachable_messages, 5)
        assert len(recorder.updates) == 1
        # Back on the same port, with a different catalog and lower indexes.
        again = ConsulStandIn(index=2, services_index=2)
        again._changed = asyncio.Condition()
        again._server = await asyncio.start_server(again._serve, "127.0.0.1", port)
        again.port = port
        await again.register("web", "web-9", 8009, [])
        await recorder.wait_for(lambda: servers(recorder, "web") == ["http://127.0.0.1:8009"], 10)
        await again.stop()


async def test_token_and_datacenter(consul) -> None:
    consul.token = "t0k"
    await consul.register("web", "web-1", 8001, [])
    endpoint = ConsulCatalogEndpoint(address=consul.address, token="t0k", datacenter="dc1")
    config = await ConsulCatalogProvider(ConsulConfig(endpoint=endpoint)).fetch()
    assert "web" in config.http.services
    from proxy.providers.base import ProviderUnavailable

    wrong = ConsulCatalogEndpoint(address=consul.address, token="nope")
    with pytest.raises(ProviderUnavailable, match="403"):
        await ConsulCatalogProvider(ConsulConfig(endpoint=wrong)).fetch()
