"""Smoke run of every benchmark scenario (about a second each) against direct and turnout.

Not a speed test: nothing here asserts a rate. It checks that each scenario runs
end to end through the real runner (backends, targets, checks, the bundled load
generator, idle holders, pinning) and produces positive counts and sane
percentiles, so that the suite does not rot. Scenarios the suite itself skips
(features Turnout does not have yet) are skipped here with the same reason.

Peers are not run here (time); their configurations for every setup are checked
with their own validators (haproxy -c, nginx -t, caddy validate) instead.
In CI (CI=true) a missing binary fails instead of skipping.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chart, report
from benchmarks.backends import (
    ECHO_MODULE,
    STREAM_MODULE,
    BundledBackend,
    NginxBackend,
    Ports,
    nginx_conf,
)
from benchmarks.procs import LOOPBACK, find_binary, free_port
from benchmarks.runner import Options, Runner
from benchmarks.scenarios import SCENARIO_NAMES, SCENARIOS, get_scenarios
from benchmarks.targets import Caddy, HAProxy, NginxProxy, Setup, make_targets
from benchmarks.ws_backend import client_frame, mask_bytes

IN_CI = os.environ.get("CI") == "true"
SMOKE_IDLE = 200  # idle connections in the smoke run (the real default is 1,000)


def missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} and CI=true")
    pytest.skip(what)


@pytest.fixture(scope="module")
def smoke_doc() -> dict[str, Any]:
    """One runner pass over every scenario: 0.6 s each, direct and turnout, bundled loadgen."""
    # tcp-gib moves 1 GiB per transfer, longer than a 0.6 s run: 16 MiB here.
    scenarios = [
        dataclasses.replace(s, message_size=16 << 20) if s.name == "tcp-gib" else s
        for s in get_scenarios(SCENARIO_NAMES)
    ]
    opts = Options(
        scenarios=scenarios,
        targets=make_targets(["direct", "turnout"]),
        duration=0.6,
        repetitions=1,
        warmup=0.0,
        loadgen="bundled",
        connections=8,
        idle_connections=SMOKE_IDLE,
    )
    runner = Runner(opts, log=lambda msg: None)
    doc = runner.run()
    json.dumps(doc)  # the record is JSON-able
    return doc


def _scenario(doc: dict[str, Any], name: str) -> dict[str, Any]:
    [sc] = [s for s in doc["scenarios"] if s["scenario"]["name"] == name]
    return sc


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_scenario_smoke(smoke_doc: dict[str, Any], name: str) -> None:
    sc = _scenario(smoke_doc, name)
    if sc["skipped"]:
        pytest.skip(f"{name}: {sc['skipped']}")
    measured = 0
    for target, tr in sc["targets"].items():
        if tr["skipped"]:
            assert target == "turnout", f"{target} skipped: {tr['skipped']}"
            continue
        assert tr["error"] is None, f"{target}: {tr['error']}"
        [run] = tr["runs"]
        assert run["error"] is None, f"{target}: {run['error']}"
        load = run["load"]
        assert load["requests"] > 0 and load["requests_per_s"] > 0, (target, load)
        assert load["errors"] == 0 and load["non_2xx"] == 0, (target, load)
        assert 0 < load["p50_us"] <= load["p99_us"] < 5_000_000, (target, load)
        if target == "turnout":
            assert run["cpu_s"] is not None and run["peak_rss_bytes"] > 0
        if sc["scenario"]["idle"]:
            idle = run["idle"]
            assert idle["ready"] == SMOKE_IDLE and idle["failed"] == 0, idle
            assert idle["still_open"] == SMOKE_IDLE, idle
            if target == "turnout":
                assert idle["rss_with_idle_bytes"] > 0
        measured += 1
    assert measured >= 1
    assert "direct" in sc["targets"] and sc["targets"]["direct"]["median"] is not None


def test_smoke_report_and_chart(smoke_doc: dict[str, Any], tmp_path: Path) -> None:
    text = report.render(smoke_doc)
    for name in SCENARIO_NAMES:
        assert f"== {name}:" in text
    for sc in smoke_doc["scenarios"]:
        if sc["skipped"]:
            assert f"SKIPPED: {sc['skipped']}" in text
    saved = report.save(smoke_doc, tmp_path)
    assert json.loads(saved.read_text())["format"] == 2
    if not chart.available():
        missing(chart.INSTALL_HINT)
    png = report.save_chart(smoke_doc, tmp_path)
    assert png is not None and png.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "latest.png").is_file()


# --- peers' configurations, checked by their own validators ----------------------

PORTS = Ports(http=18080, ws=18081, tcp_echo=18082, tcp_bulk=18083)
# The routers-10k configurations are checked with a smaller table (the shape is the
# same; the smoke run above starts Turnout with the full 10,000).
VALIDATE_ROUTERS = 50
SETUP_NAMES = ["http", "middlewares", "websocket", "tcp", "routers-10k"]


def _validate(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)}:\n{p.stdout}\n{p.stderr}"


@pytest.mark.parametrize("setup_name", SETUP_NAMES)
def test_haproxy_config_valid(tmp_path: Path, setup_name: str) -> None:
    t = HAProxy()
    if t.unavailable():
        missing("haproxy is not installed")
    setup = Setup(setup_name, ports=PORTS, routers=VALIDATE_ROUTERS)
    t.allocate_ports(setup)
    cmd, _ = t.command(tmp_path, setup)
    _validate([cmd[0], "-c", "-f", str(tmp_path / "haproxy.cfg")], tmp_path)


@pytest.mark.parametrize("setup_name", SETUP_NAMES)
def test_nginx_config_valid(tmp_path: Path, setup_name: str) -> None:
    t = NginxProxy()
    if t.unavailable():
        missing("nginx is not installed")
    if t.supports(setup_name):
        missing(str(t.supports(setup_name)))
    setup = Setup(setup_name, ports=PORTS, routers=VALIDATE_ROUTERS)
    t.allocate_ports(setup)
    conf = tmp_path / "nginx.conf"
    cfg = t.config(setup)
    conf.write_text(nginx_conf(tmp_path, cfg.pop("http_body"), **cfg))
    nginx = find_binary("nginx")
    assert nginx is not None
    _validate([nginx, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)], tmp_path)


@pytest.mark.parametrize("setup_name", ["http", "middlewares", "websocket", "routers-10k"])
def test_caddy_config_valid(tmp_path: Path, setup_name: str) -> None:
    t = Caddy()
    if t.unavailable():
        missing("caddy is not installed (apt-get install -y caddy)")
    setup = Setup(setup_name, ports=PORTS, routers=VALIDATE_ROUTERS)
    t.allocate_ports(setup)
    cmd, env = t.command(tmp_path, setup)
    _validate(
        [cmd[0], "validate", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        tmp_path,
        env,
    )


def test_caddy_has_no_tcp_equivalent() -> None:
    assert Caddy().supports("tcp") is not None
    assert Caddy().supports("http") is None


def test_required_tools_installed() -> None:
    """What `make bench` / `make test` install; in CI every one of them must be there."""
    absent = [b for b in ("wrk", "nginx", "haproxy", "caddy", "taskset") if not find_binary(b)]
    absent += [str(m) for m in (ECHO_MODULE, STREAM_MODULE) if not m.is_file()]
    if absent:
        missing(f"not installed: {', '.join(absent)} (make deps-debian)")


# --- backends ----------------------------------------------------------------------


@pytest.fixture(params=["bundled", "nginx"])
def http_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "nginx":
        if not find_binary("nginx"):
            missing("nginx is not installed")
        if not ECHO_MODULE.is_file():
            missing(f"{ECHO_MODULE} is missing (nginx-light's libnginx-mod-http-echo)")
        b: Any = NginxBackend()
    else:
        b = BundledBackend()
    b.start(tmp_path)
    try:
        yield b
    finally:
        b.stop()


def test_upload_backend_reads_the_whole_body(http_backend: Any) -> None:
    """/upload answers only once the last body byte is in, not on the head."""
    with socket.create_connection((LOOPBACK, http_backend.port), timeout=5) as s:
        s.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + b"x" * 1000
        )
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)
        s.settimeout(5)
        s.sendall(b"x" * 64536)
        reply = b""
        while b"ok\n" not in reply:
            chunk = s.recv(4096)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")


def test_websocket_frames_roundtrip() -> None:
    mask = b"\x01\x02\x03\x04"
    payload = bytes(range(200))
    assert mask_bytes(mask_bytes(payload, mask), mask) == payload
    frame = client_frame(payload, mask=mask)
    assert frame[0] == 0x82 and frame[1] == 0x80 | 126
    assert int.from_bytes(frame[2:4], "big") == 200 and frame[4:8] == mask


def test_every_scenario_has_a_known_setup() -> None:
    from benchmarks.scenarios import SETUPS

    assert {s.setup for s in SCENARIOS} <= set(SETUPS)
    assert len(SCENARIO_NAMES) == len(set(SCENARIO_NAMES))
    assert free_port() > 0
