"""loadBalancer.healthCheck through a real Turnout, against backends that die and come back.

Every server starts UP (as in Traefik); a failed probe takes it out of the
rotation, a passing one puts it back. The probe's path, method, status,
hostname and headers are checked on what the backend actually received.
"""

from __future__ import annotations

import http.server
import re
import ssl
import subprocess
import threading
import time

import pytest

from tests.integration.harness import (
    BackendProcess,
    dynamic_for,
    get,
    ok_response,
    wait_until,
)
from tests.middlewares.support import check
from tests.runtime.support import require_binary
from tests.services.support import bodies

INTERVAL = 0.3
TIMEOUT = 0.5
HEALTH = (
    "[http.services.app.loadBalancer.healthCheck]\n"
    f'path = "/health"\ninterval = "{INTERVAL}s"\ntimeout = "{TIMEOUT}s"\n'
)


def answered_by(port: int, count: int) -> list[str]:
    """X-Backend of count requests, one connection each ('503' for a 503)."""
    names = []
    for _ in range(count):
        response = get(port)
        names.append(response.header("X-Backend") or str(response.status))
    return names


def test_dead_server_leaves_rotation_within_interval_plus_timeout_and_returns(processes, turnout):
    a, b = processes("a"), processes("b")
    proxy = turnout(dynamic_for(a.url, b.url, extra=HEALTH))
    assert sorted(answered_by(proxy.port, 4)) == ["a", "a", "b", "b"]

    a.kill()
    down = f"server {a.url} of service app@file is DOWN"
    # Within interval + timeout (here the probe is refused at once), plus a second
    # of slack for a loaded machine.
    assert wait_until(lambda: down in proxy.stderr(), INTERVAL + TIMEOUT + 1.0), proxy.stderr()
    assert answered_by(proxy.port, 6) == ["b"] * 6  # no 502 once it is DOWN
    assert re.search(rf"{re.escape(down)}: cannot reach", proxy.stderr())

    processes("a", port=a.port)  # the same server, restarted
    up = f"server {a.url} of service app@file is UP"
    assert wait_until(lambda: up in proxy.stderr(), INTERVAL + TIMEOUT + 2.0), proxy.stderr()
    assert sorted(answered_by(proxy.port, 4)) == ["a", "a", "b", "b"]


def test_all_servers_down_is_503_and_recovery_serves_again(processes, turnout):
    a = processes("a")
    proxy = turnout(dynamic_for(a.url, extra=HEALTH))
    a.kill()
    assert wait_until(lambda: "is DOWN" in proxy.stderr(), INTERVAL + TIMEOUT + 1.0)
    response = get(proxy.port)
    assert (response.status, response.body) == (503, b"Service Unavailable\n")
    processes("a", port=a.port)
    assert wait_until(lambda: "is UP" in proxy.stderr(), INTERVAL + TIMEOUT + 2.0)
    assert answered_by(proxy.port, 2) == ["a", "a"]


def test_probe_sends_path_method_hostname_and_headers_and_checks_status(backend, turnout):
    # "strict" answers its probe 200 where 204 is expected: DOWN. "good" answers 204.
    def responder(name: str, probe_status: int):
        def respond(received):
            if received.target.startswith("/ready"):
                return f"HTTP/1.1 {probe_status} X\r\nContent-Length: 0\r\n\r\n".encode()
            return ok_response(name.encode())

        return respond

    good = backend(responder=responder("good", 204))
    strict = backend(responder=responder("strict", 200))
    health = (
        "[http.services.app.loadBalancer.healthCheck]\n"
        'path = "/ready?deep=1"\nmethod = "HEAD"\nstatus = 204\n'
        'hostname = "health.internal"\ninterval = "200ms"\ntimeout = "1s"\n'
        '[http.services.app.loadBalancer.healthCheck.headers]\nX-Probe = "turnout"\n'
        'User-Agent = "probe/1"\nHost = "ignored.example"\n'
    )
    proxy = turnout(dynamic_for(good.url, strict.url, extra=health))
    down = f"server {strict.url} of service app@file is DOWN: received status 200, expected 204"
    assert wait_until(lambda: down in proxy.stderr(), 3.0), proxy.stderr()
    probes = [r for r in good.requests if r.target.startswith("/ready")]
    assert probes, "the good server was never probed"
    probe = probes[0]
    assert (probe.method, probe.target) == ("HEAD", "/ready?deep=1")
    assert probe.header("Host") == "health.internal"
    assert probe.header("X-Probe") == "turnout"
    # As Go's client: User-Agent replaces the default one, Host is hostname's alone.
    assert probe.header_all("User-Agent") == ["probe/1"]
    assert probe.header_all("Host") == ["health.internal"]
    assert "is DOWN" not in proxy.stderr().replace(down, "")  # good stays UP
    bodies = {get(proxy.port).body for _ in range(4)}
    assert bodies == {b"good"}


def test_port_and_scheme_replace_the_servers(backend, turnout):
    # The service's server URL points at a port nothing listens on for traffic;
    # the probe goes to the health port instead and keeps the server UP.
    health_backend = backend()
    served = backend(responder=lambda r: ok_response(b"served"))
    health = (
        "[http.services.app.loadBalancer.healthCheck]\n"
        f'scheme = "http"\nport = {health_backend.port}\npath = "/hc"\n'
        'interval = "200ms"\ntimeout = "1s"\n'
    )
    proxy = turnout(dynamic_for(served.url, extra=health))
    assert wait_until(lambda: any(r.target == "/hc" for r in health_backend.requests), 3.0)
    assert not any(r.target == "/hc" for r in served.requests)
    assert health_backend.requests[0].header_all("User-Agent") == ["Turnout-HealthCheck"]
    assert get(proxy.port).body == b"served"


@pytest.mark.parametrize(("follow", "state"), [("true", "UP"), ("false", "DOWN")])
def test_follow_redirects(backend, turnout, follow, state):
    def respond(received):
        if received.target == "/health":
            return b"HTTP/1.1 302 Found\r\nLocation: /really\r\nContent-Length: 0\r\n\r\n"
        if received.target == "/really":
            return ok_response(b"fine")
        return ok_response(b"app")

    server = backend(responder=respond)
    health = (
        "[http.services.app.loadBalancer.healthCheck]\n"
        f'path = "/health"\nstatus = 200\nfollowRedirects = {follow}\n'
        'interval = "200ms"\ntimeout = "1s"\n'
    )
    proxy = turnout(dynamic_for(server.url, extra=health))
    assert wait_until(lambda: sum(r.target == "/health" for r in server.requests) >= 2, 3.0)
    followed = any(r.target == "/really" for r in server.requests)
    assert followed is (follow == "true")
    if state == "DOWN":
        assert "received status 302, expected 200" in proxy.stderr()
        assert get(proxy.port).status == 503
    else:
        assert "is DOWN" not in proxy.stderr()
        assert get(proxy.port).body == b"app"


def test_state_survives_a_reload_and_a_changed_server_list(processes, turnout, backend):
    a, b = processes("a"), processes("b")
    slow = (
        "[http.services.app.loadBalancer.healthCheck]\n"
        'path = "/h"\ninterval = "300ms"\nunhealthyInterval = "60s"\ntimeout = "500ms"\n'
    )
    proxy = turnout(dynamic_for(a.url, b.url, extra=slow))
    a.kill()
    assert wait_until(lambda: "is DOWN" in proxy.stderr(), 2.0)
    processes("a", port=a.port)  # back, but DOWN until its next probe in 60 s

    # Another router changes: the service is unchanged and keeps its balancer.
    other = '[http.routers.other]\nrule = "Host(`other`)"\nservice = "app"\n'
    proxy.dynamic_path.write_text(dynamic_for(a.url, b.url, extra=slow) + other)
    assert wait_until(lambda: "configuration applied" in proxy.stderr(), 5.0)
    assert answered_by(proxy.port, 4) == ["b"] * 4

    # The server list changes (c added): a stays DOWN, the newcomer is UP.
    c = processes("c")
    proxy.dynamic_path.write_text(dynamic_for(a.url, b.url, c.url, extra=slow) + other)
    assert wait_until(lambda: proxy.stderr().count("configuration applied") >= 2, 5.0)
    assert sorted(answered_by(proxy.port, 4)) == ["b", "b", "c", "c"]


def test_removed_service_stops_its_checker(backend, turnout):
    server = backend()
    health = '[http.services.app.loadBalancer.healthCheck]\npath = "/h"\ninterval = "100ms"\n'
    proxy = turnout(dynamic_for(server.url, extra=health))
    assert wait_until(lambda: len(server.requests) >= 2, 3.0)
    with_checker = proxy.stats()["tasks"]
    proxy.dynamic_path.write_text(dynamic_for(server.url))
    assert wait_until(lambda: "configuration applied" in proxy.stderr(), 5.0)
    assert wait_until(lambda: proxy.stats()["tasks"] == with_checker - 1, 3.0)
    time.sleep(0.3)
    probes = len(server.requests)
    time.sleep(0.5)
    assert len(server.requests) == probes  # no more probes
    assert server.open_connections == 0


def test_check_dials_nothing(backend, tmp_path):
    server = backend()
    health = '[http.services.app.loadBalancer.healthCheck]\npath = "/h"\ninterval = "10ms"\n'
    code, output = check(tmp_path, dynamic_for(server.url, extra=health))
    assert code == 0, output
    time.sleep(0.2)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("healthCheck", "mode", '"grpc"', "mode 'grpc' is not supported by Turnout yet"),
        ("healthCheck", "mode", '"tcp"', "mode must be http or grpc, got 'tcp'"),
        ("healthCheck", "scheme", '"ftp"', "scheme must be http or https, got 'ftp'"),
        ("healthCheck", "status", "999", "status must be 100 to 599, got 999"),
        ("healthCheck", "port", "70000", "port must be 0 to 65535, got 70000"),
        ("healthCheck", "method", '"GE T"', "invalid method 'GE T'"),
        ("passiveHealthCheck", "failureWindow", '"0s"', "must be positive, got 0 s"),
        ("passiveHealthCheck", "maxFailedAttempts", "0", "must be at least 1, got 0"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path, table, key, value, message):
    health = f"[http.services.app.loadBalancer.{table}]\n{key} = {value}\n"
    code, output = check(tmp_path, dynamic_for("http://127.0.0.1:9", extra=health))
    assert code == 1
    where = f"dynamic.toml: http.services.app.loadBalancer.{table}.{key}"
    assert f"{where}: {message}" in output, output


def flaky(name: str, failing: set[str]):
    """A responder that answers 500 while its name is in ``failing``, else 200 NAME."""

    def respond(received):
        if name in failing:
            return b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"
        return ok_response(name.encode())

    return respond


def test_passive_check_takes_a_failing_server_out_for_the_failure_window(backend, turnout):
    failing = {"a"}
    a, b = backend(responder=flaky("a", failing)), backend(responder=flaky("b", failing))
    passive = (
        "[http.services.app.loadBalancer.passiveHealthCheck]\n"
        'failureWindow = "1s"\nmaxFailedAttempts = 2\n'
    )
    proxy = turnout(dynamic_for(a.url, b.url, extra=passive))
    # Round-robin: a answers 500 twice (the client sees both), then it is DOWN.
    assert bodies(proxy.port, 4) == ["500", "b", "500", "b"]
    down = f"server {a.url} of service app@file is DOWN: 2 failed requests within 1 s"
    assert down in proxy.stderr()
    assert bodies(proxy.port, 4) == ["b"] * 4
    failing.clear()
    assert wait_until(lambda: f"server {a.url} of service app@file is UP" in proxy.stderr(), 3.0)
    assert sorted(bodies(proxy.port, 4)) == ["a", "a", "b", "b"]


def test_passive_check_forgets_failures_after_a_good_answer(backend, turnout):
    failing: set[str] = set()
    a = backend(responder=flaky("a", failing))
    passive = "[http.services.app.loadBalancer.passiveHealthCheck]\nmaxFailedAttempts = 2\n"
    proxy = turnout(dynamic_for(a.url, extra=passive))
    for _ in range(3):
        failing.add("a")
        assert bodies(proxy.port, 1) == ["500"]
        failing.clear()
        assert bodies(proxy.port, 1) == ["a"]
    assert "is DOWN" not in proxy.stderr()


def test_passive_check_counts_unreachable_servers_and_active_check_brings_them_back(
    processes, turnout
):
    a, b = processes("a"), processes("b")
    both = (
        "[http.services.app.loadBalancer.passiveHealthCheck]\n"
        'failureWindow = "30s"\nmaxFailedAttempts = 1\n'
        "[http.services.app.loadBalancer.healthCheck]\n"
        'path = "/h"\ninterval = "60s"\nunhealthyInterval = "300ms"\ntimeout = "500ms"\n'
    )
    proxy = turnout(dynamic_for(a.url, b.url, extra=both))
    a.kill()
    statuses = answered_by(proxy.port, 2)
    assert sorted(statuses) == ["502", "b"]  # one request reached the dead server
    assert f"server {a.url} of service app@file is DOWN: 1 failed request within 30 s" in (
        proxy.stderr()
    )
    assert answered_by(proxy.port, 3) == ["b"] * 3
    processes("a", port=a.port)
    # Not after the 30 s window, nor the 60 s interval: the active check probes a
    # server the passive check took DOWN on the unhealthyInterval schedule.
    assert wait_until(lambda: "is UP" in proxy.stderr(), 3.0)
    assert sorted(answered_by(proxy.port, 4)) == ["a", "a", "b", "b"]


# -- https servers: the probe uses the service's serversTransport TLS settings --


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """An https server on 127.0.0.1 with a self-signed certificate; yields (port, cert path)."""
    workdir = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            require_binary("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        cwd=workdir, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], workdir / "cert.pem"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize(
    ("transport", "state"),
    [("rootCAs", "UP"), ("insecureSkipVerify", "UP"), ("", "DOWN")],
)
def test_https_probe_uses_the_servers_transport(https_server, turnout, transport, state):
    port, cert = https_server
    settings = {
        "rootCAs": f'rootCAs = ["{cert}"]\n',
        "insecureSkipVerify": "insecureSkipVerify = true\n",
        "": "",
    }[transport]
    health = '[http.services.app.loadBalancer.healthCheck]\npath = "/h"\ninterval = "200ms"\n'
    config = dynamic_for(
        f"https://127.0.0.1:{port}",
        balancer='serversTransport = "tls"',
        extra=health + f"[http.serversTransports.tls]\n{settings}",
    )
    proxy = turnout(config)
    if state == "UP":
        time.sleep(0.7)  # three probes
        assert "is DOWN" not in proxy.stderr()
        assert get(proxy.port).body == b"secure"
    else:
        assert wait_until(lambda: "is DOWN" in proxy.stderr(), 3.0)
        assert re.search(r"is DOWN: .*certificate verify failed", proxy.stderr(), re.I)
        assert get(proxy.port).status == 503


def test_a_server_that_hangs_is_down_after_the_timeout(backend, turnout):
    # Accepts connections and never answers: only the probe's timeout can tell.
    hung = BackendProcess("hung", "silent")
    try:
        good = backend(responder=lambda r: ok_response(b"good"))
        proxy = turnout(dynamic_for(good.url, hung.url, extra=HEALTH))
        down = f"server {hung.url} of service app@file is DOWN: no answer within {TIMEOUT:g} s"
        assert wait_until(lambda: down in proxy.stderr(), INTERVAL + TIMEOUT + 1.5), proxy.stderr()
        assert [get(proxy.port).body for _ in range(4)] == [b"good"] * 4
    finally:
        hung.stop()


def test_a_server_named_localhost_stays_up_when_it_listens_on_one_family(backend, turnout):
    """``localhost`` is ::1 and 127.0.0.1; the probe dials the other address when one
    refuses, so a server on 127.0.0.1 only is not marked DOWN every other probe."""
    server = backend(responder=lambda received: ok_response(b"v4"))
    health = (
        "[http.services.app.loadBalancer.healthCheck]\n"
        'path = "/health"\ninterval = "100ms"\ntimeout = "1s"\n'
    )
    proxy = turnout(dynamic_for(f"http://localhost:{server.port}", extra=health))
    assert wait_until(lambda: sum(r.target == "/health" for r in server.requests) >= 6, 5.0), (
        proxy.stderr()
    )
    assert "is DOWN" not in proxy.stderr()
    assert get(proxy.port).body == b"v4"
