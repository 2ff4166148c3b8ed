"""Composite services in a snapshot: cross-provider children, reuse across builds, refusals."""

from __future__ import annotations

from proxy.config.load import decode_dynamic
from proxy.config.static import StaticConfig
from proxy.runtime.snapshot import ProviderConfig, build_merged
from proxy.services.failover import Failover
from proxy.services.weighted import Weighted

STATIC = StaticConfig()


def provider(
    name: str, services: dict, routers: dict | None = None, transports: dict | None = None
) -> ProviderConfig:
    raw = {"http": {"services": services, "routers": routers or {}}}
    if transports:
        raw["http"]["serversTransports"] = transports
    return ProviderConfig(name, decode_dynamic(raw, name), name)


def lb(url: str, health: bool = False, transport: str = "") -> dict:
    config: dict = {"servers": [{"url": url}]}
    if health:
        config["healthCheck"] = {"path": "/h"}
    if transport:
        config["serversTransport"] = transport
    return {"loadBalancer": config}


def waits(seconds: str) -> dict:
    return {"forwardingTimeouts": {"responseHeaderTimeout": seconds}}


def build(*configs: ProviderConfig, previous=None):
    return build_merged(list(configs), STATIC, entrypoints=["web"], previous=previous)


def test_children_of_another_provider_and_reuse_when_unchanged():
    canary = {"weighted": {"services": [{"name": "v1@redis", "weight": 3}, {"name": "v2"}]}}
    file = provider(
        "file",
        {"canary": canary, "v2": lb("http://127.0.0.1:9002")},
        {"app": {"rule": "PathPrefix(`/`)", "service": "canary"}},
    )
    redis = provider("redis", {"v1": lb("http://127.0.0.1:9001")})
    first, issues = build(file, redis)
    assert issues == []
    weighted = first.services["canary@file"]
    assert isinstance(weighted, Weighted)
    assert weighted.children == (first.services["v1@redis"], first.services["v2@file"])
    assert weighted.weights == (3, 1)
    assert first.routers["app@file"].service is weighted

    second, issues = build(file, redis, previous=first)
    assert issues == [] and second.services["canary@file"] is weighted  # rotation kept

    # A changed child (its server) makes a new parent around the new child.
    redis = provider("redis", {"v1": lb("http://127.0.0.1:9009")})
    third, issues = build(file, redis, previous=second)
    assert issues == []
    assert third.services["canary@file"] is not weighted
    assert third.services["canary@file"].children[0] is third.services["v1@redis"]


def test_failover_children_and_response_timeout_of_the_longest_transport():
    file = provider(
        "file",
        {
            "site": {"failover": {"service": "main", "fallback": "spare"}},
            "main": lb("http://127.0.0.1:9001", health=True),
            "spare": lb("http://127.0.0.1:9002"),
        },
        {"app": {"rule": "PathPrefix(`/`)", "service": "site"}},
    )
    snapshot, issues = build(file)
    assert issues == []
    site = snapshot.services["site@file"]
    assert isinstance(site, Failover)
    assert (site.main, site.fallback) == (
        snapshot.services["main@file"],
        snapshot.services["spare@file"],
    )
    assert [b.name for b in site.balancers()] == ["main@file", "spare@file"]


def test_refusals_name_the_key():
    file = provider(
        "file",
        {
            "two": {
                "loadBalancer": {"servers": [{"url": "http://127.0.0.1:9001"}]},
                "weighted": {"services": [{"name": "x"}]},
            },
            "inner": {"weighted": {"services": [{"name": "whoami@internal"}, {"name": ""}]}},
            "hrw": {"highestRandomWeight": {"services": [{"name": "x"}]}},
        },
    )
    _, issues = build(file)
    messages = {(issue.path, issue.message) for issue in issues}
    assert ("http.services.two", "a service has one type; found loadBalancer, weighted") in messages
    assert (
        "http.services.inner.weighted.services[0].name",
        "service 'whoami@internal' cannot be used by another service",
    ) in messages
    assert (
        "http.services.inner.weighted.services[1].name",
        "a service name is required",
    ) in messages
    assert (
        "http.services.hrw.highestRandomWeight",
        "highestRandomWeight services is not supported by Turnout yet",
    ) in messages
