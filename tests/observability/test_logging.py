"""log.{level, format, filePath} and the reload summary, from a real ``turnout run``."""

from __future__ import annotations

import json
import re
import signal

from tests.integration.harness import dynamic_for, get, wait_until
from tests.observability.support import check, start

COMMON = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) (TRC|DBG|INF|WRN|ERR|FTL) ")


def test_json_lines_to_a_file(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "logs" / "turnout.log"
    # The harness writes [log] level = "DEBUG"; these keys go on in that table.
    proxy = turnout(dynamic_for(server.url), static_extra=f'format = "json"\nfilePath = "{log}"\n')
    assert wait_until(lambda: log.exists() and "configuration loaded" in log.read_text(), 5)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"debug", "info"} <= {entry["level"] for entry in entries}
    loaded = next(e for e in entries if e["message"].startswith("configuration loaded"))
    assert loaded["level"] == "info"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$", loaded["time"])
    assert "configuration loaded" not in proxy.stderr()


def test_level_filters_lines(backend, tmp_path):
    server = backend()
    log = tmp_path / "turnout.log"
    process, _ = start(
        tmp_path,
        dynamic_for(server.url),
        f'[log]\nlevel = "WARN"\nformat = "json"\nfilePath = "{log}"\n',
    )
    try:
        bad = dynamic_for(server.url) + "[http.routers.bad]\nrule = 'Path(`/x`)'\n"
        (tmp_path / "dynamic.toml").write_text(bad)
        assert wait_until(lambda: "refused" in log.read_text(), 10)
    finally:
        process.terminate()
        assert process.wait(15) == 0
    levels = {json.loads(line)["level"] for line in log.read_text().splitlines()}
    assert levels == {"error"}  # the refusal; the INFO lines of start and stop are not there


def test_log_file_reopened_on_sigusr1(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "turnout.log"
    proxy = turnout(
        dynamic_for(server.url),
        static_extra=f'filePath = "{log}"\n',
    )
    assert wait_until(lambda: log.exists() and log.read_text(), 5)
    log.rename(tmp_path / "turnout.log.1")
    proxy.stats()  # SIGUSR1
    proxy.dynamic_path.write_text(dynamic_for(server.url, rule="PathPrefix(`/v2`)"))
    assert wait_until(lambda: log.exists() and "configuration applied" in log.read_text(), 5)
    assert all(COMMON.match(line) for line in log.read_text().splitlines() if line[:1].isdigit())


def test_one_summary_line_per_change_names_what_changed(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port, "/").status == 200
    extra = (
        '[http.routers.extra]\nrule = "Path(`/extra`)"\nservice = "app"\n'
        '[http.routers.more]\nrule = "Path(`/more`)"\nservice = "app"\n'
    )
    proxy.dynamic_path.write_text(dynamic_for(server.url, rule="PathPrefix(`/v2`)") + extra)
    assert wait_until(lambda: "configuration applied" in proxy.stderr(), 5)
    [line] = [line for line in proxy.stderr().splitlines() if "configuration applied" in line]
    assert COMMON.match(line), line
    assert line.endswith(
        "INF configuration applied: 3 routers (+2 added: extra@file, more@file; "
        "-0 removed; ~1 changed: app@file), 0 services changed"
    )
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(15) == 0


def test_tcp_routers_and_services_are_in_the_summary(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    tcp = (
        '[tcp.routers.db]\nentryPoints = ["web"]\nrule = "HostSNI(`*`)"\nservice = "db"\n'
        '[[tcp.services.db.loadBalancer.servers]]\naddress = "127.0.0.1:1"\n'
    )
    proxy.dynamic_path.write_text(dynamic_for(server.url) + tcp)
    assert wait_until(lambda: "configuration applied" in proxy.stderr(), 5)
    [line] = [line for line in proxy.stderr().splitlines() if "configuration applied" in line]
    assert line.endswith(
        "INF configuration applied: 2 routers (+1 added: tcp:db@file; "
        "-0 removed; ~0 changed), 1 service changed"
    ), line


def test_a_bad_log_format_is_refused(tmp_path):
    static = tmp_path / "static.toml"
    static.write_text('[entryPoints.web]\naddress = "127.0.0.1:0"\n[log]\nformat = "xml"\n')
    done = check(static)
    assert done.returncode == 1
    assert f"{static}: log.format: expected common or json, got 'xml'" in done.stderr
