"""Client timeouts and vanished clients (issue 2, section 6).

A client that sends nothing for readTimeout, or stays idle past idleTimeout, is
disconnected; a client that vanishes never leaks a file descriptor or an
upstream connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from tests.integration.harness import (
    ResponseReader,
    connect,
    dynamic_for,
    ok_response,
    read_head,
    wait_closed,
    wait_until,
)

READ_1S = 'transport.respondingTimeouts.readTimeout = "1s"'
IDLE_1S = 'transport.respondingTimeouts.idleTimeout = "1s"'


def closed_after(sock: socket.socket, started: float, limit: float = 4.0) -> tuple[float, bytes]:
    closed, data = wait_closed(sock, limit)
    assert closed, "the connection was not closed"
    return time.monotonic() - started, data


def reset(sock: socket.socket) -> None:
    """Vanish: close with a RST, the way a crashed client or a dropped phone does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("value", ['"1s"', "1"], ids=["1s", "bare-number"])
def test_client_sending_nothing_is_disconnected_after_read_timeout(backend, turnout, value):
    # Traefik durations: "1s", or a bare number of seconds.
    server = backend()
    proxy = turnout(
        dynamic_for(server.url),
        entrypoint_extra=f"transport.respondingTimeouts.readTimeout = {value}",
    )
    with connect(proxy.port) as sock:
        started = time.monotonic()
        elapsed, data = closed_after(sock, started)
    assert 0.8 <= elapsed < 2.5, elapsed
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    assert server.connections == 0


def test_client_trickling_its_head_is_disconnected_after_read_timeout(backend, turnout):
    # Slowloris: every byte arrives within the timeout, the head never completes.
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=READ_1S)
    with connect(proxy.port) as sock:
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"z" * 40:
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            answer += chunk
            if not chunk:
                closed = True
                break
        elapsed = time.monotonic() - started
    assert closed, "still connected after trickling for 4 s"
    assert 0.8 <= elapsed < 2.5, elapsed
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert bytes(server.raw_bytes) == b""


def test_read_timeout_does_not_cut_a_slow_backend(backend, turnout):
    async def slow(received):
        await asyncio.sleep(1.5)
        return ok_response(b"worth the wait")

    server = backend(responder=slow)
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=READ_1S)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = ResponseReader(sock).read()
    assert response.status == 200
    assert response.body == b"worth the wait"


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=IDLE_1S)
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.read().status == 200
        # Activity before the idle timeout keeps the connection.
        time.sleep(0.6)
        sock.sendall(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.read().status == 200
        idle_from = time.monotonic()
        elapsed, data = closed_after(sock, idle_from)
    assert 0.8 <= elapsed < 2.5, elapsed
    assert data == b""
    assert len(server.requests) == 2


def test_idle_timeout_does_not_apply_while_a_response_is_awaited(backend, turnout):
    async def slow(received):
        await asyncio.sleep(1.5)
        return ok_response(b"slow")

    server = backend(responder=slow)
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=IDLE_1S)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ResponseReader(sock).read().body == b"slow"


def _big_response(size: int):
    body = b"v" * size

    def answer(received):
        return ok_response(body)

    return answer


def test_client_vanishing_mid_response_leaks_nothing(backend, turnout):
    server = backend(responder=_big_response(20 * 1024 * 1024))
    proxy = turnout(dynamic_for(server.url))
    baseline = proxy.open_fds()
    for _ in range(5):
        sock = connect(proxy.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        sock.recv(10000)
        reset(sock)
    assert wait_until(lambda: proxy.open_fds() <= baseline, 5), (
        f"{proxy.open_fds()} fds open in turnout, {baseline} before"
    )
    assert wait_until(lambda: server.open_connections == 0, 5), (
        f"{server.open_connections} upstream connections left open"
    )


def test_client_vanishing_mid_request_body_leaks_nothing(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    baseline = proxy.open_fds()
    for _ in range(5):
        sock = connect(proxy.port)
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
        sock.sendall(b"w" * 50000)
        assert wait_until(lambda: server.open_connections >= 1, 3)
        reset(sock)
    assert wait_until(lambda: proxy.open_fds() <= baseline, 5), (
        f"{proxy.open_fds()} fds open in turnout, {baseline} before"
    )
    assert wait_until(lambda: server.open_connections == 0, 5), (
        f"{server.open_connections} upstream connections left open"
    )
    assert server.requests == []


def test_client_vanishing_while_the_backend_thinks_leaks_nothing(backend, turnout):
    async def slow(received):
        await asyncio.sleep(1.5)
        return ok_response(b"too late")

    server = backend(responder=slow)
    proxy = turnout(dynamic_for(server.url))
    baseline = proxy.open_fds()
    socks = []
    for _ in range(5):
        sock = connect(proxy.port)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        socks.append(sock)
    assert wait_until(lambda: len(server.requests) == 5, 3)
    for sock in socks:
        reset(sock)
    # The upstream connections of abandoned requests are closed, not left to the backend.
    assert wait_until(lambda: server.open_connections == 0, 3), (
        f"{server.open_connections} upstream connections left open"
    )
    assert wait_until(lambda: proxy.open_fds() <= baseline, 3), (
        f"{proxy.open_fds()} fds open in turnout, {baseline} before"
    )
