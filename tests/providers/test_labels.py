"""The label parser shared by label-based providers (Consul tags, and Docker/Nomad later)."""

from __future__ import annotations

import pytest

from proxy.config.load import ConfigError
from proxy.providers.labels import neutral_labels, normalize, parse_labels


def test_routers_services_and_middlewares_from_labels() -> None:
    parsed = parse_labels(
        {
            "traefik.enable": "true",
            "traefik.http.routers.web.rule": "Host(`example.com`) && PathPrefix(`/api`)",
            "traefik.http.routers.web.entrypoints": "web,websecure",
            "traefik.http.routers.web.middlewares": "strip,auth@file",
            "traefik.http.routers.web.tls": "true",
            "traefik.http.routers.web.tls.domains[0].main": "example.com",
            "traefik.http.routers.web.tls.domains[0].sans": "a.example.com,b.example.com",
            "traefik.http.middlewares.strip.stripprefix.prefixes": "/api",
            "traefik.http.middlewares.hdr.headers.customrequestheaders.X-Env": "prod",
            "traefik.http.services.app.loadbalancer.server.port": "8080",
            "traefik.http.services.app.loadbalancer.server.scheme": "https",
            "traefik.http.services.app.loadbalancer.passhostheader": "false",
            "traefik.docker.network": "ignored: the provider's own",
            "com.example.other": "ignored: not traefik",
        },
        "labels",
    )
    assert parsed.enable is True
    router = parsed.dynamic.http.routers["web"]
    assert router.rule == "Host(`example.com`) && PathPrefix(`/api`)"
    assert router.entry_points == ["web", "websecure"]
    assert router.middlewares == ["strip", "auth@file"]
    assert router.tls is not None and router.tls.domains[0].main == "example.com"
    assert router.tls.domains[0].sans == ["a.example.com", "b.example.com"]
    assert parsed.dynamic.http.middlewares["strip"].strip_prefix.prefixes == ["/api"]
    headers = parsed.dynamic.http.middlewares["hdr"].headers
    assert headers.custom_request_headers == {"X-Env": "prod"}
    assert parsed.dynamic.http.services["app"].load_balancer.pass_host_header is False
    assert parsed.server_ports == {("http", "app"): "8080"}
    assert parsed.server_schemes == {("http", "app"): "https"}


def test_server_fields_other_than_the_address_go_to_the_first_server() -> None:
    parsed = parse_labels({"traefik.http.services.app.loadbalancer.server.weight": "3"}, "l")
    assert parsed.dynamic.http.services["app"].load_balancer.servers[0].weight == 3


def test_tcp_labels_and_case_insensitive_keys() -> None:
    parsed = parse_labels(
        {
            "traefik.TCP.Routers.db.Rule": "HostSNI(`*`)",
            "traefik.tcp.services.db.loadbalancer.server.port": "5432",
        },
        "l",
    )
    assert parsed.dynamic.tcp.routers["db"].rule == "HostSNI(`*`)"
    assert parsed.server_ports == {("tcp", "db"): "5432"}


def test_bad_labels_name_the_label() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_labels({"traefik.http.routers.web.rul": "Host(`x`)"}, "consul service 'web'")
    assert str(caught.value.issues[0]) == (
        "consul service 'web': http.routers.web.rul: unknown key; did you mean 'rule'?"
    )
    with pytest.raises(ConfigError) as caught:
        parse_labels({"traefik.enable": "maybe"}, "l")
    assert "expected true or false" in str(caught.value)


def test_neutral_labels_from_tags_with_a_custom_prefix() -> None:
    tags = ["web", "edge.http.routers.r.rule=Host(`x`)", "edge.enable=true", "traefik.x=no"]
    assert neutral_labels(tags, "edge") == {
        "traefik.http.routers.r.rule": "Host(`x`)",
        "traefik.enable": "true",
    }


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("my_service", "my-service"), ("web.v2", "web-v2"), ("--a  b--", "a-b"), ("café", "café")],
)
def test_normalize_like_traefik(name: str, normalized: str) -> None:
    assert normalize(name) == normalized
