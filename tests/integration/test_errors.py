"""Errors a user can rely on (issue 2, section 6), each sent over a real socket.

Backend failures: 404 without a route, 502 when the backend refuses, closes or
resets, 504 past responseHeaderTimeout. Bad input: 400 (or 431, 501) and the
connection closed, and the recording backend receives nothing at all (request
smuggling defences, RFC 9112 sections 6.1 and 6.3).
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
    free_port,
    get,
    ok_response,
    read_head,
    wait_closed,
)

# -- backend failures -------------------------------------------------------------------


def test_no_matching_router_is_404(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url, rule="Host(`known.example.com`)"))
    response = get(proxy.port, host="unknown.example.com")
    assert response.status == 404
    assert response.body == b"404 page not found\n"
    assert server.connections == 0


def test_backend_refusing_connections_is_502(turnout):
    closed_port = free_port()
    proxy = turnout(dynamic_for(f"http://127.0.0.1:{closed_port}"))
    for _ in range(2):
        response = get(proxy.port)
        assert response.status == 502
        assert response.body == b"Bad Gateway\n"


async def _close_after_request(reader, writer):
    await reader.readuntil(b"\r\n\r\n")


async def _close_at_once(reader, writer):
    return


async def _reset_after_request(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _garbage(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"this is not HTTP at all\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.5)


async def _close_mid_head(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
    await writer.drain()


@pytest.mark.parametrize(
    "raw",
    [_close_after_request, _close_at_once, _reset_after_request, _garbage, _close_mid_head],
    ids=["close-after-request", "close-at-once", "reset", "garbage", "close-mid-head"],
)
def test_backend_failing_before_answering_is_502(backend, turnout, raw):
    server = backend(raw=raw)
    proxy = turnout(dynamic_for(server.url))
    started = time.monotonic()
    response = get(proxy.port)
    assert response.status == 502
    assert time.monotonic() - started < 3
    assert server.connections >= 1


def test_backend_dying_mid_body_truncates_the_response(backend, turnout):
    async def die_mid_body(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)

    server = backend(raw=die_mid_body)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock)
        closed, more = wait_closed(sock, 3)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 100000" in head.lower()
    # The client must see a cut message, never a complete-looking one.
    assert closed
    assert len(rest + more) < 100000


def test_response_header_timeout_is_504(backend, turnout):
    async def slow(received):
        await asyncio.sleep(3)
        return ok_response(b"late")

    server = backend(responder=slow)
    proxy = turnout(
        dynamic_for(
            server.url,
            balancer='serversTransport = "t"',
            extra='[http.serversTransports.t.forwardingTimeouts]\nresponseHeaderTimeout = "1s"\n',
        )
    )
    started = time.monotonic()
    response = get(proxy.port)
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert response.body == b"Gateway Timeout\n"
    assert 0.8 <= elapsed < 2.5, elapsed
    assert len(server.requests) == 1


def test_after_a_504_the_next_request_is_served(backend, turnout):
    async def slow_once(received):
        if received.target == "/slow":
            await asyncio.sleep(2.5)
        return ok_response(received.target.encode())

    server = backend(responder=slow_once)
    proxy = turnout(
        dynamic_for(
            server.url,
            balancer='serversTransport = "t"',
            extra='[http.serversTransports.t.forwardingTimeouts]\nresponseHeaderTimeout = "1s"\n',
        )
    )
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.read().status == 504
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        following = reader.read()
    # The late answer to /slow must never be taken for the answer to /fast.
    assert following.status == 200
    assert following.body == b"/fast"


# -- bad requests ------------------------------------------------------------------------

GOOD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

MALFORMED = {
    # request line
    "garbage-request-line": (b"GARBAGE\r\n\r\n", {400}),
    "missing-version": (b"GET /\r\nHost: a\r\n\r\n", {400}),
    "space-in-target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    # header lines
    "header-without-colon": (b"GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n", {400}),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Thing : 1\r\n\r\n", {400}),
    "space-before-colon-transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "bad-header-name-char": (b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n", {400}),
    "nul-in-header-value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: a\x00b\r\n\r\n", {400}),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    "http11-without-host": (b"GET / HTTP/1.1\r\n\r\n", {400}),
    # framing (RFC 9112 6.1, 6.3)
    "content-length-and-transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        {400},
    ),
    "transfer-encoding-and-content-length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"0\r\n\r\n",
        {400},
    ),
    "differing-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 11\r\n\r\nhello world",
        {400},
    ),
    "content-length-not-a-number": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
        {400},
    ),
    "transfer-encoding-gzip": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
        {400, 501},
    ),
    "transfer-encoding-chunked-not-last": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    "invalid-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        {400},
    ),
    "chunk-without-crlf": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        {400},
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_refused_closed_and_never_reaches_the_backend(backend, turnout, case):
    raw, statuses = MALFORMED[case]
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        response = ResponseReader(sock).read()
        closed, extra = wait_closed(sock, 3)
    assert response.status in statuses, response
    assert (response.header("connection") or "").lower() == "close"
    assert closed, "the connection was left open after a malformed request"
    assert extra == b"", f"more was sent after the error: {extra!r}"
    assert bytes(server.raw_bytes) == b"", f"the backend received {bytes(server.raw_bytes)!r}"
    assert server.requests == []


@pytest.mark.parametrize(
    "case", ["content-length-and-transfer-encoding", "differing-content-lengths"]
)
def test_malformed_request_on_a_warm_pool_sends_nothing_upstream(backend, turnout, case):
    raw, statuses = MALFORMED[case]
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).status == 200
    before = bytes(server.raw_bytes)
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        response = ResponseReader(sock).read()
        closed, _ = wait_closed(sock, 3)
    assert response.status in statuses
    assert closed
    time.sleep(0.2)
    assert bytes(server.raw_bytes) == before
    assert len(server.requests) == 1


def test_invalid_chunk_on_a_warm_pool_never_completes_a_request_upstream(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).status == 200
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        response = ResponseReader(sock).read()
        closed, _ = wait_closed(sock, 3)
    assert response.status == 400
    assert closed
    time.sleep(0.2)
    assert [r.target for r in server.requests] == ["/"]
    assert b"/smuggled" not in bytes(server.raw_bytes)


def test_pipelined_request_after_a_malformed_one_is_not_served(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(GOOD + b"GET / HTTP/1.1\r\nHost: a\r\nBad Line\r\n\r\n" + GOOD)
        reader = ResponseReader(sock)
        first = reader.read()
        second = reader.read()
        closed, extra = wait_closed(sock, 3)
    assert first.status == 200
    assert second.status == 400
    assert closed and extra == b""
    assert len(server.requests) == 1


# -- header size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 40000 + b"\r\n",
        b"".join(b"X-Many-%d: %s\r\n" % (i, b"b" * 1000) for i in range(40)),
    ],
    ids=["one-big-header", "many-headers"],
)
def test_header_block_over_32k_is_431(backend, turnout, headers):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
        response = ResponseReader(sock).read()
        closed, _ = wait_closed(sock, 3)
    assert response.status == 431
    assert closed
    assert bytes(server.raw_bytes) == b""


def test_header_block_under_32k_is_accepted(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    value = "c" * 30000
    assert get(proxy.port, headers=f"X-Big: {value}\r\n").status == 200
    assert server.requests[0].header("x-big") == value


def test_header_limit_is_configurable(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra="transport.maxHeaderBytes = 4096")
    assert get(proxy.port, headers=f"X-Medium: {'d' * 3000}\r\n").status == 200
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"e" * 8000 + b"\r\n\r\n")
        response = ResponseReader(sock).read()
    assert response.status == 431
    assert len(server.requests) == 1


def test_header_block_sent_slowly_is_still_limited(backend, turnout):
    # Many small segments, none large by itself: the limit is on the whole head.
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        status = None
        try:
            for index in range(100):
                sock.sendall(b"X-Part-%d: %s\r\n" % (index, b"f" * 1000))
                if index % 10 == 9:
                    time.sleep(0.01)
            sock.sendall(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        head, _ = read_head(sock)
        status = int(head.split()[1])
    assert status == 431
    assert bytes(server.raw_bytes) == b""
