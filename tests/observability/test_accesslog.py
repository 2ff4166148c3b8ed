"""accessLog: a real ``turnout run``'s lines, parsed back and compared with the requests."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.harness import (
    ResponseReader,
    connect,
    dynamic_for,
    get,
    request,
    wait_until,
)
from tests.observability.support import check, start


def _static(path: Path, body: str = "") -> str:
    return f'[accessLog]\nfilePath = "{path}"\n{body}'


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return text.splitlines()


def _wait_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    assert wait_until(lambda: len(_lines(path)) >= count, timeout), _lines(path)[-5:]
    return _lines(path)


def test_json_lines_carry_traefiks_fields_for_each_request(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "logs" / "access.json"  # the folder is created
    proxy = turnout(
        dynamic_for(server.url, rule="Host(`app.example`)"),
        static_extra=_static(log, 'format = "json"\n'),
    )
    assert get(proxy.port, "/a/b?x=1", host="app.example:8000").status == 200
    body = b"hello"
    response = request(
        proxy.port,
        b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\n" + body,
    )
    assert response.status == 200
    assert get(proxy.port, "/missing", host="other.example").status == 404
    first, second, third = (json.loads(line) for line in _wait_lines(log, 3))
    assert first["RequestMethod"] == "GET"
    assert first["RequestPath"] == "/a/b?x=1"
    assert first["RequestProtocol"] == "HTTP/1.1"
    assert first["RequestAddr"] == "app.example:8000"
    assert (first["RequestHost"], first["RequestPort"]) == ("app.example", "8000")
    assert first["DownstreamStatus"] == first["OriginStatus"] == 200
    assert first["DownstreamContentSize"] == len(b"ok")
    assert first["RouterName"] == "app@file"
    assert first["ServiceName"] == "app@file"
    assert first["ServiceURL"] == server.url
    assert first["ServiceAddr"] == f"127.0.0.1:{server.port}"
    assert first["ClientHost"] == "127.0.0.1"
    assert first["ClientAddr"].startswith("127.0.0.1:")
    assert first["RequestScheme"] == "http"
    assert 0 < first["Duration"] < 5e9  # nanoseconds
    assert first["level"] == "info" and first["msg"] == ""
    started = datetime.fromisoformat(first["StartUTC"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60
    assert list(first) == sorted(first)  # Go encodes a map with sorted keys
    assert not [key for key in first if key.startswith("request_")]  # headers: drop by default
    assert second["RequestMethod"] == "POST"
    assert second["RequestContentSize"] == len(body)
    assert third["DownstreamStatus"] == 404
    assert "OriginStatus" not in third and "RouterName" not in third
    assert third["RequestCount"] == first["RequestCount"] + 2


COMMON = re.compile(
    r"^(?P<host>\S+) - (?P<user>\S+) \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<status>\S+) (?P<size>\S+) '
    r'(?P<referer>"[^"]*") (?P<agent>"[^"]*") (?P<count>\d+) (?P<router>"[^"]*") '
    r'(?P<url>"[^"]*") (?P<ms>\d+)ms$'
)


def test_common_lines_as_traefik_writes_them(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.log"
    fields = '[accessLog.fields.headers]\ndefaultMode = "keep"\n'
    proxy = turnout(dynamic_for(server.url), static_extra=_static(log) + fields)
    get(proxy.port, "/one", headers="User-Agent: probe/1\r\nReferer: http://r.example/\r\n")
    get(proxy.port, "/two")
    one, two = (COMMON.match(line) for line in _wait_lines(log, 2))
    assert one is not None and two is not None, _lines(log)
    assert (one["host"], one["user"]) == ("127.0.0.1", "-")
    assert (one["method"], one["path"], one["proto"]) == ("GET", "/one", "HTTP/1.1")
    assert (one["status"], one["size"]) == ("200", "2")
    assert (one["referer"], one["agent"]) == ('"http://r.example/"', '"probe/1"')
    assert one["router"] == '"app@file"'
    assert one["url"] == f'"{server.url}"'
    assert int(two["count"]) == int(one["count"]) + 1
    assert (two["referer"], two["agent"]) == ('"-"', '"-"')
    when = datetime.strptime(one["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_headers_kept_dropped_or_redacted(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.json"
    fields = (
        "[accessLog.fields]\n"
        'defaultMode = "keep"\n'
        "[accessLog.fields.names]\n"
        'ClientUsername = "drop"\n'
        "[accessLog.fields.headers]\n"
        'defaultMode = "keep"\n'
        "[accessLog.fields.headers.names]\n"
        'Authorization = "redact"\n'
        'Cookie = "drop"\n'
    )
    static = _static(log, 'format = "json"\n') + fields
    proxy = turnout(dynamic_for(server.url), static_extra=static)
    get(
        proxy.port,
        "/",
        headers="Authorization: Bearer secret\r\nCookie: a=b\r\nX-Trace: t1\r\nx-trace: t2\r\n",
    )
    [line] = (json.loads(text) for text in _wait_lines(log, 1))
    assert line["request_Authorization"] == "REDACTED"
    assert "request_Cookie" not in line
    assert line["request_X-Trace"] == "t1,t2"
    assert line["request_Host"] == "example.com"
    assert "ClientUsername" not in line
    assert "secret" not in log.read_text()


def test_filters_keep_a_line_when_any_matches(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.json"
    filters = '[accessLog.filters]\nstatusCodes = ["404", "500-599"]\n'
    proxy = turnout(
        dynamic_for(server.url, rule="Host(`app.example`)"),
        static_extra=_static(log, 'format = "json"\n') + filters,
    )
    for _ in range(3):
        get(proxy.port, "/", host="app.example")
    get(proxy.port, "/gone", host="nowhere.example")
    get(proxy.port, "/", host="app.example")
    time.sleep(0.5)
    [line] = (json.loads(text) for text in _wait_lines(log, 1))
    assert (line["DownstreamStatus"], line["RequestPath"]) == (404, "/gone")


def _burst(port: int, requests: int, on_half: threading.Event) -> None:
    sock = connect(port)
    reader = ResponseReader(sock)
    sent = 0
    try:
        while sent < requests:
            batch = min(20, requests - sent)  # pipelined, answered in order
            sock.sendall(b"GET /burst/%d HTTP/1.1\r\nHost: b.example\r\n\r\n" % sent * batch)
            for _ in range(batch):
                assert reader.read(timeout=20).status == 200
            sent += batch
            if sent >= requests // 2:
                on_half.set()
    finally:
        sock.close()


def test_ten_thousand_requests_ten_thousand_lines_across_a_reopen(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    proxy = turnout(dynamic_for(server.url), static_extra=_static(log, "bufferingSize = 100\n"))
    halves = [threading.Event() for _ in range(4)]
    threads = [
        threading.Thread(target=_burst, args=(proxy.port, 2500, half), daemon=True)
        for half in halves
    ]
    for thread in threads:
        thread.start()
    for half in halves:
        assert half.wait(60)
    log.rename(rotated)  # logrotate's move, mid-burst...
    stats = proxy.stats()  # ...then SIGUSR1: the file is reopened, and stats still print
    assert stats["connections"]["web"] >= 0
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    assert wait_until(lambda: len(_lines(rotated)) + len(_lines(log)) >= 10_000, 10)
    time.sleep(0.3)
    old, new = _lines(rotated), _lines(log)
    assert old and new, (len(old), len(new))
    lines = old + new
    assert len(lines) == 10_000
    assert all(COMMON.match(line) for line in lines)
    counts = sorted(int(COMMON.match(line)["count"]) for line in lines)  # type: ignore[index]
    assert counts == list(range(counts[0], counts[0] + 10_000))  # none lost, none twice


def test_stdout_by_default(backend, tmp_path):
    server = backend()
    process, port = start(
        tmp_path, dynamic_for(server.url), "[accessLog]\n", stdout=subprocess.PIPE
    )
    try:
        assert get(port, "/out").status == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    [line] = out.decode().splitlines()
    assert COMMON.match(line) and '"GET /out HTTP/1.1"' in line


def test_bad_settings_are_refused_with_their_keys(tmp_path):
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        '[accessLog]\nformat = "xml"\n'
        '[accessLog.filters]\nstatusCodes = ["abc"]\n'
        '[accessLog.fields.headers]\ndefaultMode = "hide"\n'
    )
    done = check(static)
    assert done.returncode == 1
    assert f"{static}: accessLog.format: expected common or json, got 'xml'" in done.stderr
    assert f"{static}: accessLog.filters.statusCodes[0]:" in done.stderr
    assert f"{static}: accessLog.fields.headers.defaultMode:" in done.stderr


async def test_the_fast_json_formatter_writes_the_same_bytes_as_the_generic_one():
    from benchmarks.hotpath import RESPONSE, setup
    from proxy.config.static import AccessLog as AccessLogConfig
    from proxy.observability.accesslines import HttpRecord, LineFormatter
    from proxy.observability.accessrecord import http_record

    client, upstream, _, _ = setup()
    formatter = LineFormatter(AccessLogConfig(format="json"))
    assert formatter.fast
    seen = []
    client.entrypoint.observe = seen.append
    client.data_received(b'GET /p%20q?x="1" HTTP/1.1\r\nHost: h.example:81\r\n\r\n')
    upstream.data_received(RESPONSE)
    client.data_received(b"GET / HTTP/1.0\r\n\r\n")
    upstream.data_received(RESPONSE)
    assert len(seen) == 2
    records = []
    for i, ex in enumerate(seen):
        # Starts on and off a whole second, and fractions with trailing zeros.
        record = http_record(ex, ex.started + 0.0123, 1_700_000_000.0 + i * 0.25, False)
        named = HttpRecord._make(record)  # the request path's tuple has the fields' order
        assert (named.method, named.target) == (ex.method, ex.original_target or ex.target)
        assert (named.status, named.router) == (ex.status, ex.route.router)
        records.append(record)
    unrouted = HttpRecord._make(records[1])._replace(router="", service="", url="", host=None)
    records.append(tuple(unrouted))
    batch = formatter.lines(records, _fail)
    formatter.fast = False
    formatter.count -= len(records)  # the same RequestCount for both
    generic = formatter.lines(records, _fail)
    assert batch == generic
    lines = [json.loads(line) for line in batch.splitlines()]
    assert [line["RequestCount"] for line in lines] == [1, 2, 3]
    assert abs(lines[0]["Duration"] - 12_300_000) <= 1
    assert lines[1]["RequestProtocol"] == "HTTP/1.0"
    assert "RouterName" not in lines[2] and "RequestHost" not in lines[2]
    assert "OriginStatus" not in lines[2] and lines[2]["DownstreamStatus"] == 200


def test_one_batch_holds_http_and_tcp_lines_and_survives_a_bad_record():
    from proxy.config.static import AccessLog as AccessLogConfig
    from proxy.observability.accesslines import TCP, LineFormatter
    from proxy.observability.accessrecord import HTTP

    http = (HTTP, 1_700_000_000.5, 0.002, "10.0.0.1:5000", "10.0.0.1", None, "", 200, 12)
    http += ("http://10.0.0.9:80", "r@file", "s@file", b"a.test", "GET", b"/x", "1.1", 0, 0, None)
    tcp = (TCP, 1_700_000_001.0, 1.5, "10.0.0.2", "6000", "db@file", "10.0.0.8:5432", "db@file")
    broken = (HTTP, "not a time", *http[2:])
    errors: list[Exception] = []
    formatter = LineFormatter(AccessLogConfig(format="json"))
    text = formatter.lines([http, tcp, broken, http], errors.append)
    lines = [json.loads(line) for line in text.decode().splitlines()]
    assert [line["RequestProtocol"] for line in lines] == ["HTTP/1.1", "TCP", "HTTP/1.1"]
    assert [line["RequestCount"] for line in lines] == [1, 2, 4]  # the broken one was counted
    assert lines[1]["ServiceAddr"] == "10.0.0.8:5432" and lines[1]["Duration"] == 1_500_000_000
    assert lines[0]["StartUTC"] == "2023-11-14T22:13:20.5Z"
    assert lines[0]["ServiceAddr"] == "10.0.0.9:80" and lines[0]["RequestHost"] == "a.test"
    assert len(errors) == 1 and "not a time" in str(errors[0])


def _fail(error: Exception) -> None:
    raise AssertionError(f"a line failed: {error!r}")


def test_a_line_per_routed_tcp_connection(backend, turnout, tmp_path):
    from tests.tcp.support import echo_backend, read_to_eof, tcp_router, tcp_service

    server = echo_backend(backend)
    log = tmp_path / "access.json"
    proxy = turnout(
        tcp_router("db", "HostSNI(`*`)", "db") + tcp_service("db", server.port),
        static_extra=_static(log, 'format = "json"\n'),
    )
    ports = set()
    for payload in (b"one", b"two", b"three"):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            ports.add(str(sock.getsockname()[1]))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            assert read_to_eof(sock) == payload

    def mine() -> list[dict[str, object]]:
        # The harness' own probe of the port is a routed connection too.
        lines = [json.loads(line) for line in _lines(log)]
        return [line for line in lines if line["ClientPort"] in ports]

    assert wait_until(lambda: len(mine()) == 3, 5), _lines(log)
    lines = mine()
    for line in lines:
        assert line["RequestProtocol"] == "TCP"
        assert (line["RouterName"], line["ServiceName"]) == ("db@file", "db@file")
        assert line["ServiceAddr"] == f"127.0.0.1:{server.port}"
        assert line["ClientHost"] == "127.0.0.1" and line["Duration"] > 0
        assert list(line) == sorted(line)
    counts = [line["RequestCount"] for line in lines]
    assert counts == sorted(counts)
