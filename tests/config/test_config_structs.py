"""Struct shapes and Traefik v3 defaults; entry point addresses."""

import dataclasses
from pathlib import Path

import msgspec
import pytest

from proxy.config.dynamic import DynamicConfig, Router, Server, ServersLoadBalancer
from proxy.config.load import load_dynamic, load_static
from proxy.config.static import AddressError, EntryPoint, StaticConfig, parse_address


def test_static_defaults_without_any_file() -> None:
    config = StaticConfig()
    assert config.entry_points == {}
    assert config.providers.providers_throttle_duration is None  # Turnout's 100 ms
    assert config.providers.file is None
    assert config.log.level == "ERROR"
    assert config.api is None
    assert config.access_log is None


def test_entry_point_defaults(tmp_path: Path) -> None:
    path = tmp_path / "static.toml"
    path.write_text('[entryPoints.web]\naddress = ":8000"\n')
    entry_point = load_static(path).entry_points["web"]
    timeouts = entry_point.transport.responding_timeouts
    assert (timeouts.read_timeout, timeouts.write_timeout, timeouts.idle_timeout) == (60, 0, 180)
    life_cycle = entry_point.transport.life_cycle
    assert life_cycle.grace_time_out == 10.0
    assert life_cycle.request_accept_grace_timeout == 0.0
    assert entry_point.transport.max_header_bytes == 32768
    assert entry_point.max_header_bytes == 32768
    assert entry_point.forwarded_headers.insecure is False
    assert entry_point.forwarded_headers.trusted_ips == []
    assert entry_point.proxy_protocol is None
    assert entry_point.http.tls is None
    assert entry_point.http.sanitize_path is True
    assert entry_point.udp.timeout == 3.0
    assert entry_point == EntryPoint(address=":8000")


def test_entry_point_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "static.yaml"
    path.write_text(
        """
entryPoints:
  web:
    address: "127.0.0.1:8000"
    transport:
      maxHeaderBytes: 8192
      lifeCycle:
        graceTimeOut: 2s
        requestAcceptGraceTimeout: 500ms
      respondingTimeouts:
        readTimeout: 5
        writeTimeout: 1m
        idleTimeout: "0"
    forwardedHeaders:
      trustedIPs: ["10.0.0.0/8", "127.0.0.1"]
    proxyProtocol:
      insecure: true
  big:
    address: ":8001"
    http:
      maxHeaderBytes: 1310720
"""
    )
    config = load_static(path)
    web = config.entry_points["web"]
    assert web.transport.life_cycle.grace_time_out == 2.0
    assert web.transport.life_cycle.request_accept_grace_timeout == 0.5
    timeouts = web.transport.responding_timeouts
    assert (timeouts.read_timeout, timeouts.write_timeout, timeouts.idle_timeout) == (5, 60, 0)
    assert web.max_header_bytes == 8192
    assert web.forwarded_headers.trusted_ips == ["10.0.0.0/8", "127.0.0.1"]
    assert web.proxy_protocol is not None
    assert web.proxy_protocol.insecure is True
    # Traefik's own key wins over Turnout's transport default.
    assert config.entry_points["big"].max_header_bytes == 1310720


def test_dynamic_defaults(tmp_path: Path) -> None:
    path = tmp_path / "dynamic.toml"
    path.write_text(
        """
[http.routers.r]
  rule = "Path(`/`)"
  service = "s"
[http.routers.p]
  rule = "Path(`/p`)"
  service = "s"
  priority = 0
[[http.services.s.loadBalancer.servers]]
  url = "http://127.0.0.1:1"
[[http.services.s.loadBalancer.servers]]
  url = "http://127.0.0.1:2"
  weight = 0
"""
    )
    config = load_dynamic(path)
    # Absent priority means "length of the rule", so it must stay distinguishable from 0.
    assert config.http.routers["r"].priority is None
    assert config.http.routers["p"].priority == 0
    balancer = config.http.services["s"].load_balancer
    assert balancer is not None
    assert balancer.pass_host_header is True
    assert balancer.strategy == "wrr"
    assert balancer.response_forwarding.flush_interval == 0.1
    assert [server.weight for server in balancer.servers] == [None, 0]
    assert [server.effective_weight for server in balancer.servers] == [1, 0]


def test_struct_defaults_without_files() -> None:
    assert ServersLoadBalancer().pass_host_header is True
    assert Server(url="http://x").weight is None
    assert Router().priority is None
    assert DynamicConfig().http.routers == {}


def test_structs_are_frozen() -> None:
    router = Router(rule="Path(`/`)")
    with pytest.raises(AttributeError):
        router.rule = "Path(`/other`)"  # type: ignore[misc]


def test_structs_encode_with_traefik_key_names() -> None:
    encoded = msgspec.to_builtins(StaticConfig(entry_points={"web": EntryPoint()}), enc_hook=float)
    web = encoded["entryPoints"]["web"]
    assert web["transport"]["lifeCycle"]["graceTimeOut"] == 10.0
    assert "allowACMEByPass" in web
    assert "trustedIPs" in web["forwardedHeaders"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8000", ("", 8000, "tcp")),
        ("127.0.0.1:8000", ("127.0.0.1", 8000, "tcp")),
        ("[::1]:8000", ("::1", 8000, "tcp")),
        ("[::]:443/tcp", ("::", 443, "tcp")),
        (":53/udp", ("", 53, "udp")),
        (":53/UDP", ("", 53, "udp")),
        ("localhost:0", ("localhost", 0, "tcp")),
        (" :80 ", ("", 80, "tcp")),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int, str]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("", "missing port"),
        ("8000", "missing port"),
        ("localhost", "missing port"),
        (":http", "port must be a number"),
        (":", "port must be a number"),
        (":70000", "port must be 0-65535"),
        (":80/sctp", "protocol must be tcp or udp"),
        ("::1:80", "IPv6 hosts go in brackets"),
        ("[::1:80", "expected [host]:port"),
        ("[::1]80", "expected [host]:port"),
    ],
)
def test_parse_address_errors(address: str, problem: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(address)
    assert problem in str(caught.value)
    assert repr(address) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_config_issue_is_a_frozen_value() -> None:
    from proxy.config.load import ConfigIssue

    issue = ConfigIssue("f", "p", "m")
    assert issue == ConfigIssue("f", "p", "m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.file = "g"  # type: ignore[misc]
