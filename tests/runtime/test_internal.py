"""The internal provider: the ``traefik`` entry point, ``@internal`` routers and services."""

from __future__ import annotations

import msgspec

from proxy.config.load import decode_dynamic
from proxy.config.static import StaticConfig
from proxy.rules import SimpleRequest
from proxy.runtime.instance import entrypoint_configs
from proxy.runtime.internal import MAX_PRIORITY, internal_services
from proxy.runtime.report import check_configs
from proxy.runtime.snapshot import ProviderConfig, build_merged


def static(raw: dict) -> StaticConfig:
    return msgspec.convert(raw, StaticConfig)


def user(routers: dict) -> ProviderConfig:
    return ProviderConfig("file", decode_dynamic({"http": {"routers": routers}}, "f"), "f")


def routed(snapshot, entrypoint: str, path: str) -> str | None:
    target = snapshot.route(entrypoint, SimpleRequest("GET", "example.com", path))
    return None if target is None else target.router


def test_api_insecure_creates_the_traefik_entrypoint_on_8080() -> None:
    config = static({"entryPoints": {"web": {"address": ":80"}}, "api": {"insecure": True}})
    entrypoints = entrypoint_configs(config)
    assert list(entrypoints) == ["web", "traefik"]
    assert entrypoints["traefik"].address == ":8080"


def test_a_configured_traefik_entrypoint_is_kept() -> None:
    config = static(
        {"entryPoints": {"traefik": {"address": "127.0.0.1:9999"}}, "api": {"insecure": True}}
    )
    assert entrypoint_configs(config)["traefik"].address == "127.0.0.1:9999"


def test_no_traefik_entrypoint_without_a_feature_that_needs_it() -> None:
    assert list(entrypoint_configs(static({"api": {}}))) == ["http"]
    assert list(entrypoint_configs(static({"ping": {"manualRouting": True}}))) == ["http"]
    assert list(entrypoint_configs(static({"ping": {"entryPoint": "web"}}))) == ["http"]
    assert "traefik" in entrypoint_configs(static({"ping": {}}))


def test_insecure_api_routes_api_dashboard_and_ping_on_traefik_only() -> None:
    config = static(
        {"entryPoints": {"web": {"address": ":80"}}, "api": {"insecure": True}, "ping": {}}
    )
    entrypoints = list(entrypoint_configs(config))
    snapshot, issues = build_merged(
        [user({"app": {"rule": "PathPrefix(`/`)", "service": "whoami@internal"}})],
        config,
        entrypoints=entrypoints,
    )
    assert issues == []
    assert routed(snapshot, "traefik", "/api/overview") == "api@internal"
    assert routed(snapshot, "traefik", "/ping") == "ping@internal"
    assert routed(snapshot, "traefik", "/dashboard/") == "dashboard@internal"
    # A router without entryPoints is not on the internal entry point (as in Traefik)...
    assert routed(snapshot, "web", "/api/overview") == "app@file"
    assert snapshot.router_configs["ping@internal"].priority == MAX_PRIORITY
    assert snapshot.router_configs["api@internal"].priority == MAX_PRIORITY - 1


def test_as_default_entrypoints_take_routers_without_entrypoints() -> None:
    config = static(
        {"entryPoints": {"a": {"address": ":1", "asDefault": True}, "b": {"address": ":2"}}}
    )
    snapshot, issues = build_merged(
        [user({"app": {"rule": "PathPrefix(`/`)", "service": "whoami@internal"}})],
        config,
        entrypoints=["a", "b"],
    )
    assert issues == []
    assert routed(snapshot, "a", "/") == "app@file"
    assert routed(snapshot, "b", "/") is None


def test_internal_services_exist_only_when_enabled() -> None:
    assert set(internal_services(StaticConfig())) == {"whoami@internal"}
    assert set(internal_services(static({"api": {}, "ping": {}}))) == {
        "whoami@internal",
        "api@internal",
        "dashboard@internal",
        "ping@internal",
    }
    assert "dashboard@internal" not in internal_services(static({"api": {"dashboard": False}}))


def test_a_user_router_to_api_internal_needs_the_api_enabled() -> None:
    routers = {"api": {"rule": "PathPrefix(`/api`)", "service": "api@internal"}}
    snapshot, issues = build_merged([user(routers)], StaticConfig(), entrypoints=["web"])
    assert [issue.message for issue in issues] == ["unknown service 'api@internal'"]
    snapshot, issues = build_merged([user(routers)], static({"api": {}}), entrypoints=["web"])
    assert issues == []
    assert routed(snapshot, "web", "/api/rawdata") == "api@file"


def test_check_counts_only_user_routers() -> None:
    config = static({"api": {"insecure": True}, "ping": {}})
    dynamic = decode_dynamic(
        {"http": {"routers": {"r": {"rule": "Path(`/`)", "service": "whoami@internal"}}}}, "f"
    )
    report = check_configs(config, list(entrypoint_configs(config)), [("file", "f", dynamic)])
    assert report.ok, report.errors
    assert report.routers == 1
