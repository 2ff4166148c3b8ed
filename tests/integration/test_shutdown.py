"""Graceful shutdown on SIGTERM / SIGINT (issue 2, section 2).

Stop accepting, let in-flight requests finish within
entryPoints.NAME.transport.lifeCycle.graceTimeOut, then exit 0. No accepted
request is cut without an answer while the grace time lasts.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import pytest

from tests.integration.harness import (
    ResponseReader,
    connect,
    dynamic_for,
    get,
    ok_response,
    wait_closed,
    wait_until,
)

GRACE_5S = 'transport.lifeCycle.graceTimeOut = "5s"'


def refused(port: int) -> bool:
    """Whether a new connection is refused (the probe sends nothing if it is not)."""
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except ConnectionRefusedError:
        return True
    return False


def slow_responder(delay: float, body: bytes = b"finished"):
    async def answer(received):
        if received.target == "/slow":
            await asyncio.sleep(delay)
        return ok_response(body)

    return answer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_in_flight_request_completes_during_shutdown(backend, turnout, signum):
    server = backend(responder=slow_responder(1.0, b"x" * 100_000))
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=GRACE_5S)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_until(lambda: len(server.requests) == 1, 3)
        signalled = time.monotonic()
        proxy.signal(signum)
        # New connections are refused while the request in flight goes on.
        assert wait_until(lambda: refused(proxy.port), 0.6), "still accepting after the signal"
        response = ResponseReader(sock).read(5)
        assert response.status == 200
        assert response.body == b"x" * 100_000
        # The client is told the connection ends, and it does.
        assert response.header("connection") == "close"
        closed, extra = wait_closed(sock, 3)
        assert closed and extra == b""
    code = proxy.wait(3)
    assert code == 0, proxy.stderr()
    # It did not wait out the whole grace period once nothing was left.
    assert time.monotonic() - signalled < 3.5
    assert len(server.requests) == 1


def test_idle_keep_alive_connections_are_closed_at_shutdown(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=GRACE_5S)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ResponseReader(sock).read().status == 200
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        closed, extra = wait_closed(sock, 3)
        assert closed and extra == b""
    assert proxy.wait(3) == 0, proxy.stderr()
    assert time.monotonic() - signalled < 2


def test_pipelined_requests_in_flight_are_all_answered(backend, turnout):
    server = backend(responder=slow_responder(0.8))
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=GRACE_5S)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_until(lambda: len(server.requests) == 1, 3)
        proxy.signal(signal.SIGTERM)
        reader = ResponseReader(sock)
        first = reader.read(5)
        assert first.status == 200
        # The second request was accepted (it is in the socket already): it is
        # answered, or the connection is closed without a half answer.
        try:
            second = reader.read(5)
        except ConnectionError:
            second = None
    assert second is None or second.status == 200
    assert proxy.wait(5) == 0, proxy.stderr()


def test_grace_timeout_bounds_the_wait_for_a_backend_that_never_answers(backend, turnout):
    async def never(received):
        await asyncio.sleep(30)
        return b""

    server = backend(responder=never)
    proxy = turnout(
        dynamic_for(server.url), entrypoint_extra='transport.lifeCycle.graceTimeOut = "1s"'
    )
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_until(lambda: len(server.requests) == 1, 3)
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        code = proxy.wait(5)
        elapsed = time.monotonic() - signalled
        closed, _ = wait_closed(sock, 2)
    assert code == 0, proxy.stderr()
    assert 0.8 <= elapsed < 3, elapsed
    assert closed


def test_request_accept_grace_timeout_keeps_accepting_for_a_while(backend, turnout):
    server = backend()
    proxy = turnout(
        dynamic_for(server.url),
        entrypoint_extra='transport.lifeCycle.requestAcceptGraceTimeout = "1s"\n' + GRACE_5S,
    )
    assert get(proxy.port, "/before").status == 200
    proxy.signal(signal.SIGTERM)
    time.sleep(0.3)
    # Traefik keeps accepting during requestAcceptGraceTimeout, so a load
    # balancer in front has time to notice the instance leaving.
    response = get(proxy.port, "/during-grace")
    assert response.status == 200
    assert wait_until(lambda: refused(proxy.port), 3)
    assert proxy.wait(3) == 0, proxy.stderr()
    assert [r.target for r in server.requests] == ["/before", "/during-grace"]


def test_sigterm_with_no_traffic_exits_at_once(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).status == 200
    started = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(5) == 0, proxy.stderr()
    # The default graceTimeOut is 10s: with nothing in flight none of it is spent.
    assert time.monotonic() - started < 2


def test_request_accepted_as_soon_as_the_port_opens_survives_an_immediate_sigterm(backend, turnout):
    # A supervisor may send SIGTERM at any moment after the port opens; a request
    # the kernel already accepted must still be answered, and the exit be clean.
    server = backend()
    proxy = turnout(dynamic_for(server.url), ready=False)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", proxy.port), 1)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "turnout did not listen"
            assert proxy.process.poll() is None, proxy.stderr()
    with sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        proxy.signal(signal.SIGTERM)
        try:
            response = ResponseReader(sock).read(5)
        except ConnectionError as error:
            response = error
    code = proxy.wait(5)
    assert code == 0, f"exit {code}:\n{proxy.stderr()}"
    assert not isinstance(response, Exception), f"accepted request not answered: {response}"
    assert response.status == 200
