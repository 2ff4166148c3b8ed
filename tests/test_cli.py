"""The ``turnout`` command as a user runs it (issue 2, sections 2 and 3).

Real processes of the installed console script: exit codes (0 ok, 1
configuration error with ``FILE: key.path: message`` lines, 2 bad command
line), ``check`` as a dry run, and the embedded default configuration.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy import __version__
from tests.integration.harness import Backend, free_port, get, wait_for_port

TURNOUT = Path(sys.executable).parent / "turnout"
REPO = Path(__file__).resolve().parents[1]


def turnout(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TURNOUT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def write_config(tmp_path: Path, dynamic: str, *, name: str = "dynamic.toml", static: str = ""):
    """A static file with entry point ``web`` on a free port and the file provider on dynamic."""
    dynamic_path = tmp_path / name
    dynamic_path.write_text(dynamic)
    port = free_port()
    static_path = tmp_path / "static.toml"
    static_path.write_text(
        f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n{static}\n'
        f'[providers.file]\nfilename = "{dynamic_path}"\n'
    )
    return static_path, dynamic_path, port


GOOD_DYNAMIC = """
[http.routers.app]
rule = "Host(`app.example.com`) && PathPrefix(`/`)"
service = "app"
entryPoints = ["web"]

[http.services.app.loadBalancer]
passHostHeader = true
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:9"
weight = 2
"""


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr lines that report errors (warnings about ignored keys left out)."""
    return [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("warning: ")
    ]


def assert_config_error(result, expected_lines: list[str]) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result)
    for expected in expected_lines:
        assert expected in lines, f"{expected!r} not among {lines}"


# -- version and command line ---------------------------------------------------------------


def test_console_script_is_installed():
    assert TURNOUT.exists(), f"no console script at {TURNOUT}"


def test_version():
    result = turnout("version")
    assert result.returncode == 0
    first, second = result.stdout.strip().splitlines()
    assert first == f"turnout {__version__}"
    assert second.startswith("hot path: ")  # compiled or the sources, and why (test_native)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["run", "--bogus"],
        ["run", "-c"],
        ["check", "-c"],
        ["version", "extra"],
        ["run", "--workers", "many"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "unknown-option",
        "run-c-without-file",
        "check-c-without-file",
        "version-extra",
        "workers-not-a-number",
    ],
)
def test_bad_command_line_exits_2(args):
    result = turnout(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


# -- configuration errors -------------------------------------------------------------------


def test_unknown_dynamic_key_is_refused_with_a_suggestion(tmp_path):
    static, dynamic, port = write_config(tmp_path, GOOD_DYNAMIC.replace('rule = "', 'rul = "', 1))
    expected = f"{dynamic}:3: http.routers.app.rul: unknown key; did you mean 'rule'?"
    for command in ("run", "check"):
        result = turnout(command, "-c", str(static))
        assert_config_error(result, [expected])
    # The refused configuration never started a listener.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 0.5)


def test_unknown_static_key_is_refused_with_a_suggestion(tmp_path):
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\nadress = "127.0.0.1:0"\n'
        '[entryPoints.web.transport.respondingTimeouts]\nreadTimout = "5s"\n'
    )
    result = turnout("check", "-c", str(static))
    assert_config_error(
        result,
        [
            f"{static}:2: entryPoints.web.adress: unknown key; did you mean 'address'?",
            f"{static}:4: entryPoints.web.transport.respondingTimeouts.readTimout: "
            "unknown key; did you mean 'readTimeout'?",
        ],
    )


def test_router_naming_a_missing_service_is_refused(tmp_path):
    static, dynamic, _ = write_config(
        tmp_path, GOOD_DYNAMIC.replace('service = "app"', 'service = "nope"')
    )
    for command in ("run", "check"):
        result = turnout(command, "-c", str(static))
        assert result.returncode == 1, result.stderr
        [line] = [line for line in error_lines(result) if "http.routers.app.service" in line]
        assert line.startswith(f"{dynamic}:4: http.routers.app.service: ")
        assert "nope" in line


def test_router_naming_a_missing_middleware_is_refused(tmp_path):
    static, dynamic, _ = write_config(
        tmp_path, GOOD_DYNAMIC.replace('service = "app"', 'service = "app"\nmiddlewares = ["gone"]')
    )
    result = turnout("check", "-c", str(static))
    assert result.returncode == 1
    assert any(
        line.startswith(f"{dynamic}:5: http.routers.app.middlewares[0]: ") and "gone" in line
        for line in error_lines(result)
    ), result.stderr


def test_every_problem_is_listed_at_once(tmp_path):
    dynamic = GOOD_DYNAMIC + (
        '[http.routers.second]\nrule = "PathPrefix(`/a`)"\nservice = "missing2"\n'
        '[http.routers.third]\nrule = "PathPrefix(`/b`)"\nservice = "missing3"\n'
    )
    static, path, _ = write_config(tmp_path, dynamic)
    result = turnout("check", "-c", str(static))
    assert result.returncode == 1
    lines = error_lines(result)
    assert any(line.startswith(f"{path}:14: http.routers.second.service: ") for line in lines), (
        lines
    )
    assert any(line.startswith(f"{path}:17: http.routers.third.service: ") for line in lines), lines


def test_rule_syntax_error_names_the_router_and_the_column(tmp_path):
    static, dynamic, _ = write_config(
        tmp_path, GOOD_DYNAMIC.replace("&& PathPrefix(`/`)", "&& PathPrefix(`/`")
    )
    result = turnout("check", "-c", str(static))
    assert result.returncode == 1
    [line] = [line for line in error_lines(result) if "http.routers.app.rule" in line]
    assert line.startswith(f"{dynamic}:3: http.routers.app.rule: ")
    assert "column" in line.lower()


def test_invalid_duration_names_its_key(tmp_path):
    static, _, _ = write_config(
        tmp_path,
        GOOD_DYNAMIC,
        static='[entryPoints.web.transport.respondingTimeouts]\nreadTimeout = "soon"\n',
    )
    result = turnout("check", "-c", str(static))
    assert result.returncode == 1
    assert any(
        line.startswith(f"{static}:4: entryPoints.web.transport.respondingTimeouts.readTimeout: ")
        for line in error_lines(result)
    ), result.stderr


def test_toml_syntax_error_names_the_file(tmp_path):
    static, dynamic, _ = write_config(tmp_path, "[http.routers.app\nrule = \n")
    result = turnout("check", "-c", str(static))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert error_lines(result)[0].startswith(f"{dynamic}: ")


def test_missing_configuration_file_is_a_configuration_error(tmp_path):
    missing = tmp_path / "nowhere.toml"
    for command in ("run", "check"):
        result = turnout(command, "-c", str(missing))
        assert result.returncode == 1
        assert error_lines(result)[0].startswith(f"{missing}: ")


def test_address_in_use_is_a_configuration_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        static = tmp_path / "static.toml"
        static.write_text(f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n')
        result = turnout("run", "-c", str(static))
    assert result.returncode == 1
    assert any(
        line.startswith(f"{static}: entryPoints.web.address") for line in error_lines(result)
    ), result.stderr


# -- check --------------------------------------------------------------------------------


def test_check_accepts_a_good_configuration(tmp_path):
    static, _, port = write_config(tmp_path, GOOD_DYNAMIC)
    result = turnout("check", "-c", str(static))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    # A dry run: nothing was started.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 0.5)


def test_check_reads_yaml_and_json(tmp_path):
    yaml_text = """
http:
  routers:
    app:
      rule: "Host(`app.example.com`)"
      service: app
  services:
    app:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:9"
"""
    static, _, _ = write_config(tmp_path, yaml_text, name="dynamic.yaml")
    assert turnout("check", "-c", str(static)).returncode == 0
    data = {
        "http": {
            "routers": {"app": {"rule": "PathPrefix(`/`)", "service": "app"}},
            "services": {"app": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}},
        }
    }
    static, _, _ = write_config(tmp_path, json.dumps(data), name="dynamic.json")
    assert turnout("check", "-c", str(static)).returncode == 0
    data["http"]["routers"]["app"]["servce"] = "app"
    static, dynamic, _ = write_config(tmp_path, json.dumps(data), name="dynamic.json")
    assert_config_error(
        turnout("check", "-c", str(static)),
        [f"{dynamic}: http.routers.app.servce: unknown key; did you mean 'service'?"],
    )


def test_keys_match_case_insensitively(tmp_path):
    dynamic = """
[HTTP.Routers.app]
Rule = "PathPrefix(`/`)"
SERVICE = "app"
[http.services.app.LoadBalancer]
PassHostHeader = false
[[http.services.app.loadbalancer.Servers]]
URL = "http://127.0.0.1:9"
"""
    static, _, _ = write_config(tmp_path, dynamic)
    result = turnout("check", "-c", str(static))
    assert result.returncode == 0, result.stderr


def test_static_yaml_configuration_runs(tmp_path):
    server = Backend().start()
    try:
        dynamic = tmp_path / "dynamic.yml"
        dynamic.write_text(
            "http:\n  routers:\n    app:\n      rule: PathPrefix(`/`)\n      service: app\n"
            "  services:\n    app:\n      loadBalancer:\n        servers:\n"
            f"          - url: {server.url}\n"
        )
        port = free_port()
        static = tmp_path / "static.yml"
        static.write_text(
            f'entryPoints:\n  web:\n    address: "127.0.0.1:{port}"\n'
            f"providers:\n  file:\n    filename: {dynamic}\n"
        )
        process = subprocess.Popen(
            [str(TURNOUT), "run", "-c", str(static)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            wait_for_port(port)
            assert get(port).body == b"ok"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
    finally:
        server.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("form", ["all-interfaces", "ipv4", "ipv6"])
def test_entry_point_address_forms(tmp_path, form):
    if form == "ipv6" and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    address, connect_to = {
        "all-interfaces": (f":{port}", "127.0.0.1"),
        "ipv4": (f"127.0.0.1:{port}", "127.0.0.1"),
        "ipv6": (f"[::1]:{port}", "::1"),
    }[form]
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(
        '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
    )
    static = tmp_path / "static.toml"
    static.write_text(
        f'[entryPoints.web]\naddress = "{address}"\n[providers.file]\nfilename = "{dynamic}"\n'
    )
    process = subprocess.Popen(
        [str(TURNOUT), "run", "-c", str(static)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection((connect_to, port), 1)
                break
            except OSError:
                assert time.monotonic() < deadline, "turnout did not listen"
                time.sleep(0.05)
        with sock:
            sock.sendall(b"GET /where HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            sock.settimeout(5)
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert f"IP: {connect_to}".encode() in data
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr


# -- the embedded default --------------------------------------------------------------------


def _port_8000_busy() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8000))
        except OSError:
            return True
    return False


def test_check_without_c_checks_the_embedded_default():
    result = turnout("check")
    assert result.returncode == 0, result.stderr


def test_run_without_c_serves_whoami_on_port_8000():
    if _port_8000_busy():
        pytest.skip("127.0.0.1:8000 is in use; the embedded default needs it")
    process = subprocess.Popen(
        [str(TURNOUT), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/"
    )
    try:
        wait_for_port(8000)
        response = get(8000, "/anything?x=1", host="localhost:8000", headers="X-Hello: yes\r\n")
        assert response.status == 200
        text = response.body.decode()
        assert "GET /anything?x=1 HTTP/1.1" in text
        assert "Host: localhost:8000" in text
        assert "X-Hello: yes" in text
        assert "IP: 127.0.0.1" in text
        # The client's own address and port (HttpConnection.remote_address).
        assert re.search(r"\r\nRemoteAddr: 127\.0\.0\.1:[1-9][0-9]*\r\n", text), text
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        if process.returncode is None:
            process.kill()
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    time.sleep(0.1)
    assert not _port_8000_busy(), "port 8000 still held after exit"
