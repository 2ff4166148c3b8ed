"""Several providers compiled into one snapshot: namespaces, cross-provider names, reuse."""

from __future__ import annotations

import msgspec

from proxy.config.load import decode_dynamic
from proxy.config.static import StaticConfig
from proxy.rules import SimpleRequest
from proxy.runtime.snapshot import ProviderConfig, build_merged

STATIC = StaticConfig()


def provider(name: str, raw: dict, source: str | None = None) -> ProviderConfig:
    return ProviderConfig(name, decode_dynamic(raw, source or name), source or name)


def lb(*urls: str) -> dict:
    return {"loadBalancer": {"servers": [{"url": url} for url in urls]}}


def routed(snapshot, host: str = "", path: str = "/", entrypoint: str = "web") -> str | None:
    target = snapshot.route(entrypoint, SimpleRequest("GET", host, path))
    return None if target is None else target.router


def test_names_are_qualified_by_provider_and_resolved_within_it() -> None:
    file = provider(
        "file",
        {
            "http": {
                "routers": {"app": {"rule": "Host(`a.example`)", "service": "app"}},
                "services": {"app": lb("http://127.0.0.1:9001")},
            }
        },
    )
    redis = provider(
        "redis",
        {
            "http": {
                "routers": {"app": {"rule": "Host(`b.example`)", "service": "app"}},
                "services": {"app": lb("http://127.0.0.1:9002")},
            }
        },
    )
    snapshot, issues = build_merged([file, redis], STATIC, entrypoints=["web"])
    assert issues == []
    assert set(snapshot.routers) == {"app@file", "app@redis"}
    assert snapshot.routers["app@file"].service.name == "app@file"
    assert snapshot.routers["app@redis"].service.name == "app@redis"
    assert routed(snapshot, "a.example") == "app@file"
    assert routed(snapshot, "b.example") == "app@redis"


def test_a_router_can_name_another_providers_service() -> None:
    file = provider(
        "file",
        {"http": {"routers": {"r": {"rule": "PathPrefix(`/`)", "service": "shared@redis"}}}},
    )
    redis = provider("redis", {"http": {"services": {"shared": lb("http://127.0.0.1:9002")}}})
    snapshot, issues = build_merged([file, redis], STATIC, entrypoints=["web"])
    assert issues == []
    assert snapshot.routers["r@file"].service.name == "shared@redis"


def test_an_issue_names_the_source_of_the_provider_that_caused_it() -> None:
    file = provider(
        "file",
        {"http": {"routers": {"r": {"rule": "PathPrefix(`/`)", "service": "missing"}}}},
        "/etc/turnout/dynamic.toml",
    )
    redis = provider(
        "redis",
        {"http": {"routers": {"bad": {"rule": "Host(`x`", "service": "s@file"}}}},
        "redis://127.0.0.1:6379/traefik",
    )
    _, issues = build_merged([file, redis], STATIC, entrypoints=["web"])
    text = [str(issue) for issue in issues]
    assert "/etc/turnout/dynamic.toml: http.routers.r.service: unknown service 'missing'" in text
    assert any(line.startswith("redis://127.0.0.1:6379/traefik: http.routers.bad") for line in text)


def test_unchanged_services_keep_their_balancer_and_unchanged_tables_are_reused() -> None:
    raw = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": lb("http://127.0.0.1:9001", "http://127.0.0.1:9002")},
        }
    }
    first, _ = build_merged([provider("file", raw)], STATIC, entrypoints=["web", "admin"])
    # Entry points with identical routes share one compiled table.
    assert first.tables["web"] is first.tables["admin"]
    again, issues = build_merged(
        [provider("file", raw)], STATIC, entrypoints=["web", "admin"], previous=first
    )
    assert issues == []
    assert again.services["s@file"] is first.services["s@file"]
    assert again.tables["web"] is first.tables["web"]
    changed = {**raw, "http": {**raw["http"], "services": {"s": lb("http://127.0.0.1:9003")}}}
    third, _ = build_merged(
        [provider("file", changed)], STATIC, entrypoints=["web", "admin"], previous=again
    )
    assert third.services["s@file"] is not again.services["s@file"]
    assert third.tables["web"] is not again.tables["web"]


def test_two_routers_with_one_rule_and_one_priority_are_a_warning() -> None:
    raw = {
        "http": {
            "routers": {
                "a": {"rule": "Host(`x`)", "service": "whoami@internal"},
                "b": {"rule": "Host(`x`)", "service": "whoami@internal"},
                "c": {"rule": "Host(`x`)", "service": "whoami@internal", "priority": 5},
            }
        }
    }
    snapshot, issues = build_merged([provider("file", raw)], STATIC, entrypoints=["web"])
    assert issues == []
    assert [str(w) for w in snapshot.warnings] == [
        "file: http.routers.b.rule: same rule and priority (9) as router 'a@file'; "
        "which of the two answers is not defined"
    ]


def test_routers_on_different_entry_points_do_not_clash() -> None:
    raw = {
        "http": {
            "routers": {
                "a": {"rule": "Host(`x`)", "service": "whoami@internal", "entryPoints": ["web"]},
                "b": {"rule": "Host(`x`)", "service": "whoami@internal", "entryPoints": ["admin"]},
            }
        }
    }
    snapshot, _ = build_merged([provider("file", raw)], STATIC, entrypoints=["web", "admin"])
    assert snapshot.warnings == []


def test_chain_cycles_and_unknown_members_are_issues() -> None:
    raw = {
        "http": {
            "middlewares": {
                "a": {"chain": {"middlewares": ["b"]}},
                "b": {"chain": {"middlewares": ["a", "nope"]}},
            }
        }
    }
    _, issues = build_merged([provider("file", raw)], STATIC, entrypoints=["web"])
    text = [str(issue) for issue in issues]
    assert (
        "file: http.middlewares.a.chain.middlewares: chain cycle: a@file -> b@file -> a@file"
        in (text)
    )
    assert "file: http.middlewares.b.chain.middlewares[1]: unknown middleware 'nope'" in text


def test_unknown_entry_point_is_an_issue() -> None:
    raw = {
        "http": {
            "routers": {
                "a": {"rule": "Host(`x`)", "service": "whoami@internal", "entryPoints": ["nope"]}
            }
        }
    }
    _, issues = build_merged([provider("file", raw)], STATIC, entrypoints=["web"])
    assert [str(i) for i in issues] == [
        "file: http.routers.a.entryPoints[0]: unknown entry point 'nope'"
    ]


def test_an_entry_point_refusing_encoded_characters_checks_its_routers_first() -> None:
    static = msgspec.convert(
        {
            "entryPoints": {
                "web": {"address": ":80"},
                "guarded": {
                    "address": ":81",
                    "http": {"encodedCharacters": {"allowEncodedHash": False}},
                },
            }
        },
        StaticConfig,
    )
    raw = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["h"]}},
            "middlewares": {"h": {"headers": {"customResponseHeaders": {"X-A": "1"}}}},
            "services": {"s": lb("http://127.0.0.1:9001")},
        }
    }
    first, issues = build_merged([provider("file", raw)], static, entrypoints=["web", "guarded"])
    assert issues == []
    open_target = first.route("web", SimpleRequest("GET", "", "/"))
    guarded_target = first.route("guarded", SimpleRequest("GET", "", "/"))
    check, *rest = guarded_target.chain.handlers
    assert check.name == "entryPoints.guarded.http.encodedCharacters"
    assert tuple(rest) == open_target.chain.handlers  # then the router's own middlewares
    assert first.routers["r@file"] is open_target  # what the API shows: the router itself
    # A reload that changes nothing keeps both compiled tables.
    again, _ = build_merged(
        [provider("file", raw)], static, entrypoints=["web", "guarded"], previous=first
    )
    assert again.tables["guarded"] is first.tables["guarded"]
    assert again.tables["web"] is first.tables["web"]
