"""metrics.statsD: the datagrams a real ``turnout run`` sends, received on a real UDP socket."""

from __future__ import annotations

import socket
import time
from collections import defaultdict

import pytest

from proxy.observability.statsd import parse_address, sanitise
from tests.integration.harness import connect, dynamic_for, get, recv_all
from tests.observability.support import cli


class StatsdServer:
    """A UDP socket on a free loopback port that keeps every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def receive(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert len(data) <= 1432
            self.lines.extend(data.decode().split("\n"))

    def counters(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for name, value, kind, _ in self.parsed():
            if kind == "c":
                totals[name] += int(value)
        return dict(totals)

    def gauges(self) -> dict[str, float]:
        return {name: float(value) for name, value, kind, _ in self.parsed() if kind == "g"}

    def timings(self, name: str) -> list[tuple[float, float]]:
        """(mean ms, requests it stands for) of every timing line of name."""
        return [
            (float(value), 1 / rate)
            for line_name, value, kind, rate in self.parsed()
            if kind == "ms" and line_name == name
        ]

    def parsed(self) -> list[tuple[str, str, str, float]]:
        out = []
        for line in self.lines:
            name, _, rest = line.partition(":")
            value, _, tail = rest.partition("|")
            kind, _, rate = tail.partition("|@")
            out.append((name, value, kind, float(rate) if rate else 1.0))
        return out

    def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not received in time; lines: {self.lines[-40:]}")
            self.receive(0.1)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd_server():  # type: ignore[no-untyped-def]
    server = StatsdServer()
    yield server
    server.close()


def _static(port: int, extra: str = "") -> str:
    return (
        "[metrics.statsD]\n"
        f'address = "127.0.0.1:{port}"\n'
        'pushInterval = "200ms"\n'
        "addRoutersLabels = true\n" + extra
    )


def test_counters_timings_and_gauges_after_a_known_number_of_requests(
    backend, turnout, statsd_server
):
    server = backend()
    proxy = turnout(dynamic_for(server.url), static_extra=_static(statsd_server.port))
    for _ in range(100):
        assert get(proxy.port, "/x").status == 200
    for _ in range(3):
        assert get(proxy.port, "/", host="nowhere.example").status == 200
    router = "turnout.router.request.total.app_file.200"
    statsd_server.wait_for(lambda: statsd_server.counters().get(router, 0) >= 103)
    statsd_server.receive(0.5)  # later pushes must not send the same requests again
    counters = statsd_server.counters()
    assert counters[router] == 103
    assert counters["turnout.service.request.total.app_file.200"] == 103
    assert counters["turnout.entrypoint.request.total.web.200"] == 103
    assert counters["turnout.router.responses.bytes.total.app_file.200"] == 103 * len(b"ok")
    assert counters["turnout.config.reload.total"] == 1
    timings = statsd_server.timings("turnout.router.request.duration.app_file.200")
    assert round(sum(count for _, count in timings)) == 103
    assert all(0 < mean < 5000 for mean, _ in timings)
    gauges = statsd_server.gauges()
    assert gauges[f"turnout.service.server.up.app_file.{sanitise(server.url)}"] == 1
    assert "turnout.open.connections.web" in gauges
    assert gauges["turnout.config.reload.lastSuccessTimestamp"] > time.time() - 60


def test_open_connections_gauge_follows_the_clients(backend, turnout, statsd_server):
    server = backend()
    proxy = turnout(dynamic_for(server.url), static_extra=_static(statsd_server.port))
    clients = [connect(proxy.port) for _ in range(3)]
    try:
        statsd_server.wait_for(
            lambda: statsd_server.gauges().get("turnout.open.connections.web") == 3
        )
        assert statsd_server.gauges()["turnout.open.connections"] == 3
    finally:
        for client in clients:
            client.close()
    statsd_server.wait_for(lambda: statsd_server.gauges().get("turnout.open.connections.web") == 0)


def test_not_found_counts_for_the_entry_point_and_families_follow_their_flags(
    backend, turnout, statsd_server
):
    server = backend()
    extra = "addServicesLabels = false\naddEntryPointsLabels = true\n"
    proxy = turnout(
        dynamic_for(server.url, rule="Host(`app.example`)"),
        static_extra=_static(statsd_server.port, extra),
    )
    for _ in range(5):
        assert get(proxy.port, "/", host="other.example").status == 404
    sock = connect(proxy.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
    assert b"200" in recv_all(sock).split(b"\r\n", 1)[0]
    sock.close()
    name = "turnout.entrypoint.request.total.web.404"
    statsd_server.wait_for(lambda: statsd_server.counters().get(name) == 5)
    statsd_server.wait_for(
        lambda: statsd_server.counters().get("turnout.router.request.total.app_file.200") == 1
    )
    assert not [n for n in statsd_server.counters() if n.startswith("turnout.service.")]


def test_a_bad_address_is_refused_with_its_key(tmp_path) -> None:
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        '[metrics.statsD]\naddress = "no-port-here"\npushInterval = "0s"\n'
    )
    for command in ("run", "check"):
        done = cli(command, static)
        assert done.returncode == 1
        assert f"{static}: metrics.statsD.address: invalid address 'no-port-here'" in done.stderr
        assert f"{static}: metrics.statsD.pushInterval: must be positive" in done.stderr


def test_names_and_addresses() -> None:
    assert sanitise("api@file") == "api_file"
    assert sanitise("http://10.0.0.1:80") == "http___10_0_0_1_80"
    assert parse_address("[::1]:8125") == ("::1", 8125)
    with pytest.raises(ValueError):
        parse_address("localhost")
