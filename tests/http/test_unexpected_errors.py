"""An exception nothing expected, raised while a request is served (proxy/http/server.py).

httptools wraps an exception raised in a parser callback, so such a bug used to
pass for a malformed request: its 400 was queued behind the very exchange that
failed, and the client waited for an answer that never came, with nothing
logged. Now the exchange is answered 500 and its connection closed, the
traceback is logged, and the process goes on serving.

No built-in service fails on demand, so these tests run a real ``turnout run``
through a launcher that adds one internal service, ``boom@internal``, which
raises; the server code under test is Turnout's own.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.harness import REPO, ResponseReader, connect, get, request
from tests.observability.test_prometheus import PROMETHEUS, scrape, value

BOOM = "boom in an internal service"
LAUNCHER = f"""
import sys
sys.path.insert(0, {str(REPO)!r})

from proxy.runtime import internal


def boom(exchange):
    raise RuntimeError({BOOM!r})


_features = internal.features
internal.features = lambda: (*_features(), internal.InternalService("boom@internal", boom))

from proxy.cli import main

sys.exit(main())
"""

DYNAMIC = """
[http.routers.boom]
rule = "PathPrefix(`/boom`)"
service = "boom@internal"

[http.routers.chained]
rule = "PathPrefix(`/chained`)"
service = "boom@internal"
middlewares = ["one-at-a-time"]

[http.routers.whoami]
rule = "PathPrefix(`/`)"
service = "whoami@internal"
middlewares = ["one-at-a-time"]

[http.middlewares.one-at-a-time.inFlightReq]
amount = 1
"""


def start(turnout, tmp_path: Path):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    return turnout(DYNAMIC, launcher=launcher, expected_traceback=f"RuntimeError: {BOOM}")


def test_a_failing_internal_service_is_answered_500_and_logged(turnout, tmp_path) -> None:
    proxy = start(turnout, tmp_path)
    began = time.monotonic()
    response = get(proxy.port, "/boom")
    assert time.monotonic() - began < 2  # answered, not left to a timeout
    assert response.status == 500
    assert response.header("Connection") == "close"
    stderr = proxy.stderr()
    assert "unexpected error while serving a request on entry point web" in stderr
    assert f"RuntimeError: {BOOM}" in stderr
    assert "Traceback" in stderr
    # The process goes on serving.
    assert get(proxy.port, "/whoami").status == 200


def test_with_a_request_body(turnout, tmp_path) -> None:
    proxy = start(turnout, tmp_path)
    body = b"x" * 5000
    raw = b"POST /boom HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert request(proxy.port, raw).status == 500


def test_behind_a_pipelined_request(turnout, tmp_path) -> None:
    """The failing request is dispatched when the one before it is answered."""
    proxy = start(turnout, tmp_path)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: a\r\n\r\nGET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        reader = ResponseReader(sock)
        first = reader.read()
        assert first.status == 200 and b"GET /who HTTP/1.1" in first.body
        second = reader.read()
        assert second.status == 500
        sock.settimeout(2)
        assert sock.recv(1) == b""  # and the connection is closed


def test_the_middlewares_of_the_failed_request_finish(turnout, tmp_path) -> None:
    """inFlightReq (amount 1) counts the failed request out again: its on_done ran."""
    proxy = start(turnout, tmp_path)
    assert get(proxy.port, "/chained").status == 500
    for _ in range(3):
        assert get(proxy.port, "/after").status == 200


def test_the_failed_request_is_counted(turnout, tmp_path) -> None:
    """Its 500 reaches the metrics, like any answered request's."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    proxy = turnout(
        DYNAMIC,
        launcher=launcher,
        expected_traceback=f"RuntimeError: {BOOM}",
        entrypoints=("web", "metrics"),
        static_extra=PROMETHEUS,
    )
    for _ in range(3):
        assert get(proxy.port, "/boom").status == 500
    samples = scrape(proxy.ports["metrics"])
    failed = {"code": "500", "method": "GET", "protocol": "http"}
    assert (
        value(
            samples,
            "turnout_router_requests_total",
            **failed,
            router="boom@file",
            service="boom@internal",
        )
        == 3
    )
