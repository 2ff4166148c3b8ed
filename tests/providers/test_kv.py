"""Traefik's key-value layout turned into the dynamic tree."""

from __future__ import annotations

import pytest

from proxy.config.load import ConfigError
from proxy.providers.kv import decode_kv, kv_tree, prefix_end


def test_keys_become_the_dynamic_tree() -> None:
    config = decode_kv(
        {
            "traefik/http/routers/web/rule": "Host(`example.com`)",
            "traefik/http/routers/web/entryPoints/0": "web",
            "traefik/http/routers/web/entryPoints/1": "admin",
            "traefik/http/routers/web/service": "app",
            "traefik/http/routers/web/priority": "42",
            "traefik/http/services/app/loadBalancer/servers/0/url": "http://10.0.0.1:80",
            "traefik/http/services/app/loadBalancer/servers/1/url": "http://10.0.0.2:80",
            "traefik/http/services/app/loadBalancer/servers/1/weight": "3",
            "traefik/http/services/app/loadbalancer/passHostHeader": "false",
            "other/http/routers/x/rule": "ignored: not under rootKey",
        },
        "traefik",
        "redis",
    )
    router = config.http.routers["web"]
    assert router.rule == "Host(`example.com`)"
    assert router.entry_points == ["web", "admin"]
    assert router.priority == 42
    lb = config.http.services["app"].load_balancer
    assert [s.url for s in lb.servers] == ["http://10.0.0.1:80", "http://10.0.0.2:80"]
    assert lb.servers[1].weight == 3
    assert lb.pass_host_header is False


def test_list_order_is_numeric_not_textual() -> None:
    pairs = {f"traefik/http/routers/r/entryPoints/{i}": f"e{i}" for i in range(12)}
    pairs["traefik/http/routers/r/rule"] = "Host(`x`)"
    pairs["traefik/http/routers/r/service"] = "s"
    config = decode_kv(pairs, "traefik", "redis")
    assert config.http.routers["r"].entry_points == [f"e{i}" for i in range(12)]


def test_a_custom_root_key() -> None:
    tree = kv_tree(
        {"/prod/proxy/http/routers/r/rule": "x", "prod/proxy/http/routers/r/service": "s"},
        "/prod/proxy/",
        "etcd",
    )
    assert tree == {"http": {"routers": {"r": {"service": "s"}}}}


def test_unknown_keys_are_refused_with_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        decode_kv({"traefik/http/routers/r/rul": "Host(`x`)"}, "traefik", "redis 127.0.0.1")
    assert str(caught.value.issues[0]) == (
        "redis 127.0.0.1: http.routers.r.rul: unknown key; did you mean 'rule'?"
    )


def test_a_key_that_is_both_a_value_and_a_folder_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        kv_tree(
            {"traefik/http/routers/r": "x", "traefik/http/routers/r/rule": "Host(`x`)"},
            "traefik",
            "etcd",
        )
    assert "holds a value and also has keys below it" in str(caught.value)


def test_prefix_end() -> None:
    assert prefix_end(b"traefik/") == b"traefik0"
    assert prefix_end(b"a\xff") == b"b"
