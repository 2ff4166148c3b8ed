"""metrics.prometheus: a real ``turnout run``'s /metrics, read with prometheus-client's parser."""

from __future__ import annotations

import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import dynamic_for, free_port, get, request, wait_until

PROMETHEUS = (
    "[metrics.prometheus]\n"
    'entryPoint = "metrics"\n'
    "addRoutersLabels = true\n"
    "buckets = [0.1, 0.3, 1.2, 5.0]\n"
)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = get(port, "/metrics", host="localhost")
    assert response.status == 200, response.body
    assert response.header("content-type").startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples[(name, tuple(sorted(labels.items())))]


def test_counts_of_requests_by_router_service_and_entry_point(backend, turnout):
    server = backend()
    proxy = turnout(
        dynamic_for(server.url, rule="Host(`app.example`)"),
        entrypoints=("web", "metrics"),
        static_extra=PROMETHEUS,
    )
    for _ in range(100):
        assert get(proxy.port, "/", host="app.example").status == 200
    for _ in range(4):
        assert get(proxy.port, "/", host="other.example").status == 404
    samples = scrape(proxy.ports["metrics"])
    labels = {"code": "200", "method": "GET", "protocol": "http"}
    router = {**labels, "router": "app@file", "service": "app@file"}
    assert value(samples, "turnout_router_requests_total", **router) == 100
    assert value(samples, "turnout_service_requests_total", **labels, service="app@file") == 100
    assert value(samples, "turnout_entrypoint_requests_total", **labels, entrypoint="web") == 100
    not_found = {"code": "404", "method": "GET", "protocol": "http", "entrypoint": "web"}
    assert value(samples, "turnout_entrypoint_requests_total", **not_found) == 4
    assert not [k for k in samples if k[0].startswith("turnout_router") and ("code", "404") in k[1]]
    histogram = "turnout_router_request_duration_seconds"
    assert value(samples, histogram + "_count", **router) == 100
    assert value(samples, histogram + "_bucket", **router, le="+Inf") == 100
    les = sorted(
        float(dict(k[1])["le"])
        for k in samples
        if k[0] == histogram + "_bucket" and dict(k[1])["router"] == "app@file"
    )
    assert les == [0.1, 0.3, 1.2, 5.0, float("inf")]
    assert 0 < value(samples, histogram + "_sum", **router) < 100
    assert value(samples, "turnout_router_responses_bytes_total", **router) == 100 * len(b"ok")
    assert value(samples, "turnout_router_requests_bytes_total", **router) == 0
    assert value(samples, "turnout_service_server_up", service="app@file", url=server.url) == 1
    assert value(samples, "turnout_config_reloads_total") == 1
    assert value(samples, "turnout_config_reloads_failure_total") == 0
    assert value(samples, "turnout_config_last_reload_success") > time.time() - 60
    assert value(samples, "turnout_open_connections", entrypoint="web", protocol="TCP") == 0
    assert value(samples, "turnout_open_connections", entrypoint="metrics", protocol="TCP") == 1
    assert any(name.startswith("process_") for name, _ in samples)
    # Scrapes go through an internal router: not counted (metrics.addInternals is off).
    again = scrape(proxy.ports["metrics"])
    assert not [k for k in again if ("entrypoint", "metrics") in k[1] and "requests" in k[0]]


def test_retries_and_refused_reloads(backend, turnout):
    down = f"http://127.0.0.1:{free_port()}"
    dynamic = (
        '[http.routers.flaky]\nrule = "Host(`flaky.example`)"\nservice = "down"\n'
        'middlewares = ["retry"]\n'
        "[http.middlewares.retry.retry]\nattempts = 3\n"
        "[http.services.down.loadBalancer]\n"
        f'[[http.services.down.loadBalancer.servers]]\nurl = "{down}"\n'
    )
    proxy = turnout(dynamic, entrypoints=("web", "metrics"), static_extra=PROMETHEUS)
    for _ in range(5):
        assert get(proxy.port, "/", host="flaky.example").status == 502
    proxy.dynamic_path.write_text(dynamic + "[http.routers.broken]\nrule = 'Host(`x`)'\n")
    assert wait_until(lambda: "configuration from provider file refused" in proxy.stderr(), 10)
    samples = scrape(proxy.ports["metrics"])
    assert value(samples, "turnout_service_retries_total", service="down@file") == 10
    labels = {"code": "502", "method": "GET", "protocol": "http", "service": "down@file"}
    assert value(samples, "turnout_service_requests_total", **labels) == 5
    assert value(samples, "turnout_config_reloads_failure_total") == 1
    assert value(samples, "turnout_config_last_reload_failure") > time.time() - 60


def test_manual_routing_and_families_off(backend, turnout):
    server = backend()
    dynamic = dynamic_for(server.url, rule="Host(`app.example`)") + (
        '[http.routers.scrape]\nrule = "Path(`/metrics`)"\nservice = "prometheus@internal"\n'
    )
    static = (
        "[metrics.prometheus]\nmanualRouting = true\n"
        "addEntryPointsLabels = false\naddServicesLabels = false\n"
    )
    proxy = turnout(dynamic, static_extra=static)
    get(proxy.port, "/", host="app.example")
    samples = scrape(proxy.port)
    names = {name for name, _ in samples}
    assert "turnout_config_reloads_total" in names
    assert not [n for n in names if n.startswith(("turnout_entrypoint_", "turnout_service_"))]
    assert not [n for n in names if n.startswith("turnout_router_")]  # routers: off by default
    assert request(proxy.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status == 405


def test_open_tcp_connections_and_udp_sessions_per_router(backend, turnout):
    from tests.tcp.support import echo_backend, read_exactly, tcp_router, tcp_service
    from tests.udp.test_server import Echo, ask, client, free_udp_port, lb

    tcp_echo = echo_backend(backend)
    udp_echo = Echo()
    udp_port = free_udp_port()
    dynamic = (
        tcp_router("db", "HostSNI(`*`)", "db", 'entryPoints = ["web"]')
        + tcp_service("db", tcp_echo.port)
        + '[udp.routers.r]\nentryPoints = ["dns"]\nservice = "echo"\n'
        + lb(udp_echo.port)
    )
    static = PROMETHEUS + f'[entryPoints.dns]\naddress = "127.0.0.1:{udp_port}/udp"\n'
    proxy = turnout(dynamic, entrypoints=("web", "metrics"), static_extra=static)
    tcp_clients = []
    udp_clients = [client() for _ in range(3)]
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            sock.sendall(b"ping")
            assert read_exactly(sock, 4) == b"ping"
            tcp_clients.append(sock)
        for sock in udp_clients:
            assert ask(sock, udp_port, b"hi") == b"hi"
        where = {"entrypoint": "web", "router": "db@file", "service": "db@file"}
        # The harness' own probe of the port (a routed connection too) may still be closing.
        assert wait_until(
            lambda: (
                value(
                    scrape(proxy.ports["metrics"]), "turnout_tcp_router_open_connections", **where
                )
                == 2
            ),
            5,
        )
        samples = scrape(proxy.ports["metrics"])
        where = {"entrypoint": "dns", "router": "r@file", "service": "echo@file"}
        assert value(samples, "turnout_udp_router_open_sessions", **where) == 3
        assert value(samples, "turnout_udp_entrypoint_sessions_total", entrypoint="dns") == 3
        assert value(samples, "turnout_open_connections", entrypoint="dns", protocol="UDP") == 3
        assert value(samples, "turnout_open_connections", entrypoint="web", protocol="TCP") == 2
    finally:
        for sock in tcp_clients + udp_clients:
            sock.close()
        udp_echo.stop()
