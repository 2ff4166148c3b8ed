"""HTTP/1.x proxying through a real Turnout: framing, streaming, keep-alive, headers.

Issue 2, section 5 (the HTTP engine). Every test talks to a real ``turnout run``
over raw sockets and checks what the client got and what reached the backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time

import pytest

from tests.integration.harness import (
    ResponseReader,
    connect,
    dynamic_for,
    get,
    ok_response,
    read_head,
    request,
    wait_closed,
    wait_until,
)

# -- request bodies -------------------------------------------------------------------


def test_post_with_content_length_reaches_backend_intact(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    body = b"name=turnout&kind=proxy"
    response = request(
        proxy.port,
        b"POST /form HTTP/1.1\r\nHost: a.example.com\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert response.status == 200
    [received] = server.requests
    assert received.method == "POST"
    assert received.target == "/form"
    assert received.body == body
    assert received.header("content-length") == str(len(body))
    assert received.header("content-type") == "application/x-www-form-urlencoded"


def test_content_length_body_is_streamed_before_it_is_complete(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    first, second = b"A" * 20000, b"B" * 20000
    with connect(proxy.port) as sock:
        sock.sendall(
            b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % 40000 + first
        )
        # The first half must reach the backend while the client still holds the rest.
        assert wait_until(lambda: first in bytes(server.raw_bytes), 3), (
            "the first half of the body was not passed on before the body was complete"
        )
        sock.sendall(second)
        response = ResponseReader(sock).read()
    assert response.status == 200
    [received] = server.requests
    assert received.body == first + second


def test_chunked_request_body_is_streamed_and_arrives_intact(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        assert wait_until(lambda: b"hello" in bytes(server.raw_bytes), 3), (
            "the first chunk was not passed on before the body was complete"
        )
        sock.sendall(b"7\r\n, brave\r\n")
        time.sleep(0.05)
        sock.sendall(b"b;ext=1\r\n new world!\r\n0\r\n\r\n")
        response = ResponseReader(sock).read()
    assert response.status == 200
    [received] = server.requests
    assert received.body == b"hello, brave new world!"
    assert received.header("content-length") is None
    assert received.header("transfer-encoding") == "chunked"


def test_large_request_body_arrives_intact(backend, turnout):
    def digest(received):
        return ok_response(hashlib.sha256(received.body).hexdigest().encode())

    server = backend(responder=digest)
    proxy = turnout(dynamic_for(server.url))
    body = os.urandom(3 * 1024 * 1024)
    with connect(proxy.port, timeout=10) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        response = ResponseReader(sock).read(10)
    assert response.status == 200
    assert response.body == hashlib.sha256(body).hexdigest().encode()


# -- responses --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1024 * 1024, 5 * 1024 * 1024], ids=["1MiB", "5MiB"])
def test_large_response_arrives_intact(backend, turnout, size):
    body = os.urandom(size)
    server = backend(responder=lambda received: ok_response(body))
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port, timeout=10) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        response = ResponseReader(sock).read(10)
    assert response.status == 200
    assert response.header("content-length") == str(size)
    assert len(response.body) == size
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(body).digest()


def test_chunked_response_from_backend_is_passed_on_intact(backend, turnout):
    pieces = [b"first piece;", os.urandom(70000), b"", b"last"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    server = backend(
        responder=lambda received: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
        )
    )
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /chunks HTTP/1.1\r\nHost: a\r\n\r\n")
        response = reader.read()
        assert response.status == 200
        assert response.body == b"".join(pieces)
        # The framing was understood: the same connection serves another request.
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.read().body == b"".join(pieces)


async def _close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1.0-style backend: no Content-Length, the body ends when it closes."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    writer.write(CLOSE_DELIMITED_BODY)
    await writer.drain()


CLOSE_DELIMITED_BODY = os.urandom(300_000)


def test_close_delimited_response_to_http11_client(backend, turnout):
    server = backend(raw=_close_delimited)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        response = reader.read()
        assert response.status == 200
        assert response.body == CLOSE_DELIMITED_BODY
        # Re-framed for the client, so its connection stays usable.
        sock.sendall(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.read().body == CLOSE_DELIMITED_BODY
    assert server.connections == 2


def test_close_delimited_response_to_http10_client(backend, turnout):
    server = backend(raw=_close_delimited)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nHost: a\r\n\r\n")
        closed, data = wait_closed(sock)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert b"chunked" not in head.lower()
    assert body == CLOSE_DELIMITED_BODY


def test_head_response_has_no_body_and_the_connection_stays_usable(backend, turnout):
    def answer(received):
        if received.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n"
        return ok_response(b"after head")

    server = backend(responder=answer)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"HEAD /page HTTP/1.1\r\nHost: a\r\n\r\n")
        response = reader.read(head=True)
        assert response.status == 200
        assert response.header("content-length") == "1234"
        assert response.header("transfer-encoding") is None
        time.sleep(0.2)
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
        following = reader.read()
    assert following.status == 200
    assert following.body == b"after head"
    assert [r.method for r in server.requests] == ["HEAD", "GET"]
    assert server.connections == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nX-Kind: empty\r\n\r\n',
    ],
    ids=["204", "304"],
)
def test_bodiless_statuses_pass_through_and_keep_the_connection(backend, turnout, head):
    status = int(head.split()[1])
    server = backend(responder=lambda r: head if r.target == "/empty" else ok_response(b"next"))
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n")
        response = reader.read()
        assert response.status == status
        assert response.body == b""
        assert response.header("x-kind") == "empty"
        assert response.header("transfer-encoding") is None
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        following = reader.read()
    assert following.status == 200
    assert following.body == b"next"


# -- keep-alive and pipelining -------------------------------------------------------


def test_upstream_connection_is_reused_for_sequential_requests(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for index in range(20):
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % index)
            response = reader.read()
            assert response.status == 200
            assert response.header("connection") is None
    assert len(server.requests) == 20
    assert server.connections == 1


def test_upstream_pool_is_shared_by_client_connections(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    for _ in range(10):
        assert get(proxy.port).status == 200
    assert len(server.requests) == 10
    assert server.connections == 1


def test_backend_connection_close_is_honoured(backend, turnout):
    server = backend(responder=lambda r: ok_response(extra="Connection: close\r\n"))
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert reader.read().status == 200
    assert server.connections == 3


def test_pooled_connection_closed_by_backend_is_not_reused_for_a_post(backend, turnout):
    async def one_per_connection(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        writer.write(ok_response(b"got " + body))  # keep-alive promised...
        await writer.drain()
        # ...and the connection closed right after, as a backend's idle timeout does.

    server = backend(raw=one_per_connection)
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).body == b"got "
    time.sleep(0.3)
    response = request(proxy.port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\ndata")
    assert response.status == 200
    assert response.body == b"got data"
    assert server.connections == 2


def test_pipelined_requests_are_answered_in_order(backend, turnout):
    async def slow_first(received):
        # The earliest requests take longest: an out-of-order proxy would show it.
        delays = {"/0": 0.3, "/1": 0.2, "/2": 0.0, "/3": 0.1, "/4": 0.0}
        await asyncio.sleep(delays.get(received.target, 0))
        return ok_response(f"{received.target} {received.body.decode()}".encode())

    server = backend(responder=slow_first)
    proxy = turnout(dynamic_for(server.url))
    requests = (
        b"GET /0 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
        b"GET /4 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    with connect(proxy.port) as sock:
        sock.sendall(requests)
        reader = ResponseReader(sock)
        bodies = [reader.read().body for _ in range(5)]
    assert bodies == [b"/0 ", b"/1 one", b"/2 ", b"/3 two", b"/4 "]
    assert [r.target for r in server.requests] == ["/0", "/1", "/2", "/3", "/4"]


def test_client_connection_close_is_honoured(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        response = ResponseReader(sock).read()
        assert response.status == 200
        assert response.header("connection") == "close"
        closed, extra = wait_closed(sock, 3)
    assert closed and extra == b""
    # Connection: close is hop-by-hop: the backend connection stays pooled.
    assert server.requests[0].header("connection") is None


# -- HTTP/1.0 clients ------------------------------------------------------------------


def test_http10_client_gets_its_answer_and_the_connection_closes(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\nHost: old.example.com\r\n\r\n")
        response = ResponseReader(sock).read()
        closed, extra = wait_closed(sock, 3)
    assert response.status == 200
    assert response.body == b"ok"
    assert closed and extra == b""
    [received] = server.requests
    assert received.target == "/old"
    assert received.header("host") == "old.example.com"


@pytest.mark.parametrize(
    "writes",
    [
        [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nHost: a\r\n\r\n"],
        [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\nGET /b HTTP/1.0\r\nHost: a\r\n\r\n"],
        [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTT", b"P/1.0\r\nHost: a\r\n\r\n"],
    ],
    ids=["pipelined", "empty-line-first", "line-split"],
)
def test_each_request_is_answered_as_its_own_version_says(backend, turnout, writes):
    """The version is read from the request line where the read holds it
    (HttpConnection._request_version): a 1.0 request after a 1.1 one on the same
    connection must still be taken for 1.0, and its connection closed."""
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for data in writes:
            sock.sendall(data)
            time.sleep(0.05)
        first, second = reader.read(), reader.read()
        closed, extra = wait_closed(sock, 3)
    assert (first.status, second.status) == (200, 200)
    assert (first.header("connection") or "").lower() != "close"
    assert closed and extra == b"", "the HTTP/1.0 request's connection stayed open"
    assert [r.target for r in server.requests] == ["/a", "/b"]


def test_http10_keep_alive_client_keeps_its_connection(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for path in (b"/one", b"/two"):
            sock.sendall(b"GET %s HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % path)
            response = reader.read()
            assert response.status == 200
            assert (response.header("connection") or "").lower() == "keep-alive"
    assert [r.target for r in server.requests] == ["/one", "/two"]


def test_http10_request_without_host_reaches_backend_with_a_host(backend, turnout):
    # Turnout speaks HTTP/1.1 to the backend, where Host is mandatory (RFC 9112 3.2);
    # Go's proxy (Traefik) sends the backend's address when the client sent none.
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /nohost HTTP/1.0\r\n\r\n")
        response = ResponseReader(sock).read()
    assert response.status == 200
    [received] = server.requests
    assert received.target == "/nohost"
    assert received.header("host"), f"no Host header sent upstream: {received.headers}"


# -- Expect: 100-continue -----------------------------------------------------------


async def _continue_then_echo(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    if b"100-continue" in head.lower():
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    body = await reader.readexactly(length)
    writer.write(ok_response(b"echo:" + body))
    await writer.drain()


def test_expect_100_continue_from_backend_reaches_client_before_the_body(backend, turnout):
    server = backend(raw=_continue_then_echo)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"PUT /file HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        reader = ResponseReader(sock)
        interim = reader.read(3)
        assert interim.status == 100
        sock.sendall(b"hello world")
        final = reader.read()
    assert final.status == 200
    assert final.body == b"echo:hello world"


def test_expect_100_continue_with_a_backend_that_ignores_it(backend, turnout):
    # Like curl: wait a moment for 100 Continue, then send the body anyway.
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        reader = ResponseReader(sock)
        try:
            first = reader.read(1)
        except TimeoutError:
            first = None
        assert first is None or first.status == 100
        sock.sendall(b"body")
        final = reader.read()
    assert final.status == 200
    [received] = server.requests
    assert received.body == b"body"


def test_expect_100_continue_without_route_gets_final_answer_at_once(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url, rule="Host(`only.example.com`)"))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nHost: other.example.com\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = ResponseReader(sock).read(3)
    assert response.status == 404
    assert server.raw_bytes == b""


# -- headers ----------------------------------------------------------------------------


def test_hop_by_hop_request_headers_are_removed(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    response = request(
        proxy.port,
        b"GET /h HTTP/1.1\r\nHost: a\r\n"
        b"Connection: keep-alive, X-Secret, x-other-secret\r\n"
        b"X-Secret: 1\r\nX-Other-Secret: 2\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
        b"TE: gzip\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\nProxy-Authorization: Basic eA==\r\n"
        b"X-Kept: yes\r\nAccept: text/plain\r\n\r\n",
    )
    assert response.status == 200
    [received] = server.requests
    names = {name.lower() for name, _ in received.headers}
    for dropped in (
        "x-secret",
        "x-other-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "trailer",
        "proxy-authorization",
    ):
        assert dropped not in names, f"{dropped} reached the backend: {received.headers}"
    assert (received.header("connection") or "").lower() in ("", "keep-alive")
    assert received.header("x-kept") == "yes"
    assert received.header("accept") == "text/plain"


def test_hop_by_hop_response_headers_are_removed(backend, turnout):
    server = backend(
        responder=lambda r: ok_response(
            b"resp",
            "Connection: keep-alive, X-Backend-Secret\r\nX-Backend-Secret: 1\r\n"
            "Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n"
            "Upgrade: h2c\r\nX-Kept: yes\r\n",
        )
    )
    proxy = turnout(dynamic_for(server.url))
    response = get(proxy.port)
    assert response.status == 200
    assert response.body == b"resp"
    names = {name.lower() for name, _ in response.headers}
    for dropped in ("x-backend-secret", "keep-alive", "proxy-connection", "upgrade"):
        assert dropped not in names, f"{dropped} reached the client: {response.headers}"
    assert response.header("x-kept") == "yes"


_SPOOFED = (
    "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\n"
    "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\nX-Real-Ip: 6.6.6.6\r\n"
    "X-Forwarded-Server: spoofed\r\nX-Forwarded-Uri: /spoofed\r\n"
)


@pytest.mark.parametrize(
    "entrypoint_extra",
    ["", 'forwardedHeaders.trustedIPs = ["10.0.0.0/8", "192.168.1.1"]'],
    ids=["default", "other-trusted-ips"],
)
def test_x_forwarded_headers_of_untrusted_clients_are_replaced(backend, turnout, entrypoint_extra):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=entrypoint_extra)
    assert get(proxy.port, "/", host="app.example.com", headers=_SPOOFED).status == 200
    [received] = server.requests
    assert received.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert received.header_all("x-forwarded-host") == ["app.example.com"]
    assert received.header_all("x-forwarded-proto") == ["http"]
    assert received.header_all("x-forwarded-port") == ["80"]
    assert received.header_all("x-real-ip") == ["127.0.0.1"]
    assert received.header_all("x-forwarded-server") == [socket.gethostname()]
    assert received.header("x-forwarded-uri") is None


@pytest.mark.parametrize(
    "entrypoint_extra",
    ['forwardedHeaders.trustedIPs = ["127.0.0.1/32"]', "forwardedHeaders.insecure = true"],
    ids=["trustedIPs", "insecure"],
)
def test_x_forwarded_headers_of_trusted_clients_are_kept(backend, turnout, entrypoint_extra):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra=entrypoint_extra)
    assert get(proxy.port, "/", host="app.example.com", headers=_SPOOFED).status == 200
    [received] = server.requests
    assert received.header_all("x-forwarded-for") == ["1.2.3.4, 127.0.0.1"]
    assert received.header_all("x-forwarded-host") == ["evil.example"]
    assert received.header_all("x-forwarded-proto") == ["https"]
    assert received.header_all("x-forwarded-port") == ["8443"]
    assert received.header_all("x-real-ip") == ["6.6.6.6"]
    assert received.header_all("x-forwarded-uri") == ["/spoofed"]
    # Traefik sets X-Forwarded-Server to its own host name, whoever asks.
    assert received.header_all("x-forwarded-server") == [socket.gethostname()]


def test_x_forwarded_headers_follow_each_connections_client(backend, turnout):
    # Turnout remembers what it derives per client IP (the X-Forwarded-For block,
    # whether the IP is trusted): connections from two IPs, one trusted, alternate.
    server = backend()
    proxy = turnout(
        dynamic_for(server.url), entrypoint_extra='forwardedHeaders.trustedIPs = ["127.0.0.2"]'
    )
    for source in ["127.0.0.1", "127.0.0.2"] * 3:
        with socket.create_connection(("127.0.0.1", proxy.port), 5, (source, 0)) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: app.example.com\r\n{_SPOOFED}\r\n".encode())
            assert ResponseReader(sock).read(5).status == 200
    assert len(server.requests) == 6
    for received, source in zip(server.requests, ["127.0.0.1", "127.0.0.2"] * 3, strict=True):
        if source == "127.0.0.1":
            assert received.header_all("x-forwarded-for") == ["127.0.0.1"]
            assert received.header_all("x-real-ip") == ["127.0.0.1"]
            assert received.header_all("x-forwarded-host") == ["app.example.com"]
        else:
            assert received.header_all("x-forwarded-for") == ["1.2.3.4, 127.0.0.2"]
            assert received.header_all("x-real-ip") == ["6.6.6.6"]
            assert received.header_all("x-forwarded-host") == ["evil.example"]


def test_x_forwarded_host_and_port_follow_each_requests_host(backend, turnout):
    # Hosts are remembered per entry point, up to 1,024 of them: 1,100 distinct
    # Hosts on one connection go past that, then the first ones come again.
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    hosts = [f"h{i}.example.com:{1000 + i}" for i in range(1100)] + ["h0.example.com:1000"]
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for host in hosts:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert reader.read(5).status == 200
        # A Host that is not valid is still refused on a connection that has a cached one.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
        assert reader.read(5).status == 400
    assert len(server.requests) == len(hosts)
    for received, host in zip(server.requests, hosts, strict=True):
        assert received.header_all("x-forwarded-host") == [host]
        assert received.header_all("x-forwarded-port") == [host.rpartition(":")[2]]


def test_trusted_client_without_x_forwarded_headers_gets_them_set(backend, turnout):
    server = backend()
    proxy = turnout(
        dynamic_for(server.url), entrypoint_extra='forwardedHeaders.trustedIPs = ["127.0.0.1"]'
    )
    assert get(proxy.port, "/", host="app.example.com:9090").status == 200
    [received] = server.requests
    assert received.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert received.header_all("x-forwarded-host") == ["app.example.com:9090"]
    assert received.header_all("x-forwarded-proto") == ["http"]
    assert received.header_all("x-forwarded-port") == ["9090"]
    assert received.header_all("x-real-ip") == ["127.0.0.1"]


def test_several_x_forwarded_for_headers_of_a_trusted_client_are_joined(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url), entrypoint_extra="forwardedHeaders.insecure = true")
    headers = "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n"
    assert get(proxy.port, headers=headers).status == 200
    [received] = server.requests
    assert received.header_all("x-forwarded-for") == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]


def test_host_header_is_passed_through_by_default(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port, host="Public.Example.com:8080").status == 200
    assert server.requests[0].header_all("host") == ["Public.Example.com:8080"]


def test_pass_host_header_false_sends_the_server_host_and_port(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url, balancer="passHostHeader = false"))
    assert get(proxy.port, host="public.example.com").status == 200
    [received] = server.requests
    assert received.header_all("host") == [f"127.0.0.1:{server.port}"]
    assert received.header("x-forwarded-host") == "public.example.com"


def test_backend_given_by_host_name_is_resolved(backend, turnout):
    server = backend()
    proxy = turnout(
        dynamic_for(f"http://localhost:{server.port}", balancer="passHostHeader = false")
    )
    response = get(proxy.port, "/named")
    assert response.status == 200
    assert response.body == b"ok"
    [received] = server.requests
    assert received.target == "/named"
    assert received.header("host") == f"localhost:{server.port}"


def test_absolute_form_target_replaces_host(backend, turnout):
    right, wrong = backend(), backend()
    dynamic = (
        dynamic_for(right.url, rule="Host(`right.example.com`)")
        + '[http.routers.wrong]\nrule = "Host(`wrong.example.com`)"\nservice = "wrong"\n'
        f'[[http.services.wrong.loadBalancer.servers]]\nurl = "{wrong.url}"\n'
    )
    proxy = turnout(dynamic)
    response = request(
        proxy.port,
        b"GET http://right.example.com/path?q=1 HTTP/1.1\r\nHost: wrong.example.com\r\n\r\n",
    )
    assert response.status == 200
    assert wrong.requests == []
    [received] = right.requests
    assert received.target == "/path?q=1"
    assert received.header_all("host") == ["right.example.com"]


def test_response_head_is_sent_even_when_the_body_is_slow(backend, turnout):
    async def trickle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(1.0)
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()

    server = backend(raw=trickle)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        started = time.monotonic()
        head, rest = read_head(sock, 3)
        while b"first" not in rest:
            rest += sock.recv(65536)
        assert time.monotonic() - started < 0.8, "the first chunk waited for the whole body"
        assert head.startswith(b"HTTP/1.1 200")


# -- resources ------------------------------------------------------------------------


def test_a_closed_connection_leaves_nothing_for_the_garbage_collector(backend, turnout):
    # A connection that only the collector can free (a reference cycle) stays in
    # memory until a collection, and every new one takes fresh, cold memory:
    # new-connection traffic paid for it in CPU. turnout-stats' gc_pending counts
    # the objects allocated and not freed since the last collection.
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    for _ in range(20):  # warm-up: per-route counters, caches
        assert get(proxy.port).status == 200
    for _ in range(3):
        before = proxy.stats()
        for _ in range(300):
            # One request per connection; the client closes after the response.
            assert get(proxy.port, "/x").status == 200
        assert wait_until(lambda: sum(proxy.stats()["connections"].values()) == 0, 5)
        after = proxy.stats()
        if after["gc_collections"] == before["gc_collections"]:
            break  # no collection ran in between: the counts compare
    else:
        pytest.fail(f"a garbage collection ran during each of 3 attempts: {after}")
    grown = after["gc_pending"] - before["gc_pending"]
    # 13 objects per connection were left in cycles before (3,900 here).
    assert grown < 300, f"{grown} objects await the collector after 300 connections"
