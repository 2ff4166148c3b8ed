"""The rotation of a LoadBalancer follows its servers' health states."""

from __future__ import annotations

import logging

from proxy.config.durations import Duration
from proxy.config.dynamic import ServerHealthCheck
from proxy.config.static import ServersTransport
from proxy.services.healthcheck import compile_health_check
from proxy.services.loadbalancer import LoadBalancer, Server


def balancer(*weights: int) -> LoadBalancer:
    servers = [
        Server(f"http://10.0.0.{index}:80", None, b"h", weight)  # type: ignore[arg-type]
        for index, weight in enumerate(weights, 1)
    ]
    return LoadBalancer("app@file", servers, True)


def picks(lb: LoadBalancer, count: int) -> list[str]:
    return [lb.pick().url.rsplit(".", 1)[1] for _ in range(count)]  # type: ignore[union-attr]


def test_down_server_leaves_the_rotation_and_comes_back(caplog):
    lb = balancer(2, 1, 1)
    first, second, third = lb.members
    caplog.set_level(logging.INFO, "turnout.health")
    lb.set_status(first, False, "received status 500")
    assert picks(lb, 4) == ["2:80", "3:80", "2:80", "3:80"]
    assert lb.server_states() == {
        first.url: "DOWN",
        second.url: "UP",
        third.url: "UP",
    }
    assert first.reason == "received status 500"
    assert f"server {first.url} of service app@file is DOWN: received status 500" in caplog.text
    lb.set_status(first, True)
    assert sorted(picks(lb, 4)) == ["1:80", "1:80", "2:80", "3:80"]
    assert first.reason == ""
    assert f"server {first.url} of service app@file is UP" in caplog.text


def test_all_down_is_unavailable_and_a_repeat_is_not_logged_again(caplog):
    lb = balancer(1, 1)
    caplog.set_level(logging.INFO, "turnout.health")
    for server in lb.members:
        lb.set_status(server, False, "refused")
        lb.set_status(server, False, "refused")
    assert not lb.available
    assert lb.pick() is None
    assert caplog.text.count("is DOWN") == 2


def test_weight_zero_server_is_reported_but_never_picked():
    lb = balancer(0, 1)
    assert list(lb.server_states().values()) == ["UP", "UP"]
    assert picks(lb, 3) == ["2:80"] * 3


def test_probe_url_resolves_path_and_replaces_scheme_and_port():
    transport = ServersTransport()
    spec = compile_health_check(ServerHealthCheck(path="/health?x=1"), transport)
    assert spec.url_for("http://backend:8080") == "http://backend:8080/health?x=1"
    spec = compile_health_check(
        ServerHealthCheck(path="ready", scheme="https", port=9443), transport
    )
    assert spec.url_for("http://backend:8080/") == "https://backend:9443/ready"
    assert spec.url_for("http://[::1]:8080") == "https://[::1]:9443/ready"


def test_defaults_are_traefiks():
    spec = compile_health_check(ServerHealthCheck(), ServersTransport())
    assert (spec.interval, spec.unhealthy_interval, spec.timeout) == (30.0, 30.0, 5.0)
    assert (spec.method, spec.status, spec.follow_redirects) == ("GET", 0, True)
    # Zero or negative: Traefik falls back on its defaults.
    spec = compile_health_check(
        ServerHealthCheck(
            interval=Duration(-1), unhealthy_interval=Duration(0), timeout=Duration(0)
        ),
        ServersTransport(),
    )
    assert (spec.interval, spec.unhealthy_interval, spec.timeout) == (30.0, 30.0, 5.0)
    spec = compile_health_check(
        ServerHealthCheck(interval=Duration(10), unhealthy_interval=Duration(2)),
        ServersTransport(),
    )
    assert (spec.interval, spec.unhealthy_interval) == (10.0, 2.0)
