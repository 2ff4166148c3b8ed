"""buffering through a real turnout: whole bodies before the service, 413, 500."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    Backend,
    Received,
    ResponseReader,
    Turnout,
    connect,
    get,
    ok_response,
    wait_closed,
    wait_until,
)
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    read_request,
    service,
)


def chunked(*parts: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


def respond(received: Received) -> bytes:
    if received.target == "/big":
        return ok_response(b"x" * 5000)
    if received.target == "/big-chunked":
        return chunked(b"x" * 2500, b"y" * 2500)
    if received.target == "/fits-chunked":
        return chunked(b"x" * 2000, b"y" * 2000)  # exactly maxResponseBodyBytes
    return ok_response(b"got %d" % len(received.body))


@pytest.fixture(scope="module")
def app() -> Iterator[Backend]:
    server = Backend(responder=respond).start()
    yield server
    server.stop()


MIDDLEWARES = """
[http.middlewares.limited.buffering]
maxRequestBodyBytes = 1000
maxResponseBodyBytes = 4000
[http.middlewares.spill.buffering]
memRequestBodyBytes = 1000
[http.middlewares.retrying.buffering]
retryExpression = "IsNetworkError() && Attempts() < 3"
"""


@pytest.fixture(scope="module")
def proxy(app: Backend, flaky: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    routers = host_router("limited", ["limited"]) + host_router("spill", ["spill"])
    routers += host_router("retrying", ["retrying"]).replace('service = "app"', 'service = "flaky"')
    return module_proxy(MIDDLEWARES + routers + service(app.url) + service(flaky.url, "flaky"))


class Dropper:
    """Reads each request whole, then resets the first ``drops`` connections."""

    def __init__(self) -> None:
        self.drops = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        _, body = await read_request(reader)
        if self.drops > 0:
            self.drops -= 1
            writer.transport.abort()
            return
        # Connection: close: no pooled connection for the next test to find closed.
        writer.write(ok_response(b"got " + body, "Connection: close\r\n"))
        await writer.drain()
        writer.close()


DROPPER = Dropper()


@pytest.fixture(scope="module")
def flaky() -> Iterator[Backend]:
    server = Backend(raw=DROPPER.handle).start()
    yield server
    server.stop()


def post_head(host: str, extra: str) -> bytes:
    return f"POST /up HTTP/1.1\r\nHost: {host}.test\r\n{extra}\r\n".encode()


def test_content_length_over_the_maximum_is_413_up_front(proxy: Turnout, app: Backend) -> None:
    before = len(app.raw_bytes)
    with connect(proxy.port) as sock:
        sock.sendall(post_head("limited", "Content-Length: 1001\r\n"))  # no body sent
        response = ResponseReader(sock).read()
        assert response.status == 413
        assert response.body == b"Request Entity Too Large"
        assert wait_closed(sock)[0]
    assert len(app.raw_bytes) == before


def test_the_body_is_held_until_complete(proxy: Turnout, app: Backend) -> None:
    before = len(app.raw_bytes)
    with connect(proxy.port) as sock:
        sock.sendall(post_head("limited", "Content-Length: 1000\r\n") + b"a" * 600)
        time.sleep(0.15)
        assert len(app.raw_bytes) == before  # nothing forwarded yet, not even the head
        sock.sendall(b"b" * 400)
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got 1000")
    assert app.requests[-1].body == b"a" * 600 + b"b" * 400


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_chunked_body_is_held_until_complete(proxy: Turnout, app: Backend) -> None:
    before = len(app.raw_bytes)
    with connect(proxy.port) as sock:
        sock.sendall(post_head("limited", "Transfer-Encoding: chunked\r\n") + chunk(b"a" * 500))
        time.sleep(0.15)
        assert len(app.raw_bytes) == before
        sock.sendall(chunk(b"b" * 500) + b"0\r\n\r\n")
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got 1000")


def test_a_chunked_body_over_the_maximum_is_413(proxy: Turnout, app: Backend) -> None:
    before = len(app.raw_bytes)
    with connect(proxy.port) as sock:
        sock.sendall(post_head("limited", "Transfer-Encoding: chunked\r\n") + chunk(b"a" * 800))
        time.sleep(0.05)
        sock.sendall(chunk(b"b" * 300))  # 1100 bytes: over, and the body is not over
        response = ResponseReader(sock).read()
        assert response.status == 413
        assert wait_closed(sock)[0]
    assert len(app.raw_bytes) == before


def spool_files(proxy: Turnout) -> list[str]:
    """Regular files in the temporary directory that turnout holds open (body spools)."""
    tmp = tempfile.gettempdir()
    found = []
    for fd in Path(f"/proc/{proxy.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(tmp + "/"):
            found.append(target)
    return found


def test_a_body_past_memory_is_held_in_a_temporary_file(proxy: Turnout, app: Backend) -> None:
    # memRequestBodyBytes = 1000, no maximum: held whole all the same, as Traefik.
    before = len(app.raw_bytes)
    files = len(spool_files(proxy))
    with connect(proxy.port) as sock:
        sock.sendall(post_head("spill", "Content-Length: 5000\r\n") + b"a" * 3000)
        assert wait_until(lambda: len(spool_files(proxy)) == files + 1, 3)
        time.sleep(0.1)
        assert len(app.raw_bytes) == before  # nothing forwarded yet, not even the head
        sock.sendall(b"b" * 2000)
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got 5000")
    assert app.requests[-1].body == b"a" * 3000 + b"b" * 2000
    assert wait_until(lambda: len(spool_files(proxy)) == files, 3)  # deleted with the exchange


def test_a_large_chunked_body_goes_through_the_file(proxy: Turnout, app: Backend) -> None:
    pieces = [bytes([65 + n % 26]) * 100_000 for n in range(30)]  # 3 MB in 30 chunks
    with connect(proxy.port) as sock:
        sock.sendall(post_head("spill", "Transfer-Encoding: chunked\r\n"))
        for piece in pieces:
            sock.sendall(chunk(piece))
        sock.sendall(b"0\r\n\r\n")
        response = ResponseReader(sock).read(timeout=15)
    assert (response.status, response.body) == (200, b"got 3000000")
    assert app.requests[-1].body == b"".join(pieces)


def test_a_response_over_the_maximum_is_500(proxy: Turnout) -> None:
    big = get(proxy.port, "/big", host="limited.test")
    assert (big.status, big.body) == (500, b"Internal Server Error")
    assert get(proxy.port, "/", host="limited.test").status == 200
    assert get(proxy.port, "/big", host="spill.test").status == 200  # no maximum


def test_a_response_without_length_is_bounded_too(proxy: Turnout) -> None:
    big = get(proxy.port, "/big-chunked", host="limited.test")
    assert (big.status, big.body) == (500, b"Internal Server Error")
    fits = get(proxy.port, "/fits-chunked", host="limited.test")
    assert fits.status == 200
    assert fits.body == b"x" * 2000 + b"y" * 2000
    assert get(proxy.port, "/big-chunked", host="spill.test").status == 200  # no maximum


def test_retry_expression_sends_the_held_body_again(proxy: Turnout, flaky: Backend) -> None:
    DROPPER.drops = 2
    before = DROPPER.connections
    request = post_head("retrying", "Content-Length: 7\r\n") + b"payload"
    with connect(proxy.port) as sock:
        sock.sendall(request)
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got payload")
    assert DROPPER.connections - before == 3  # Attempts() 1 and 2 retried
    # Attempts() < 3 stops after the third try: the 502 goes to the client.
    DROPPER.drops = 5
    before = DROPPER.connections
    with connect(proxy.port) as sock:
        sock.sendall(request)
        response = ResponseReader(sock).read()
    assert response.status == 502
    assert DROPPER.connections - before == 3
    DROPPER.drops = 0


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        """
[http.middlewares.neg.buffering]
maxRequestBodyBytes = -1
[http.middlewares.retry.buffering]
retryExpression = "IsNetworkError() && Attempts() <"
[http.middlewares.fn.buffering]
retryExpression = "IsTimeout()"
""",
    )
    assert code != 0
    assert "http.middlewares.neg.buffering.maxRequestBodyBytes: must not be negative" in output
    assert "http.middlewares.retry.buffering.retryExpression: invalid expression" in output
    assert "http.middlewares.fn.buffering.retryExpression: invalid expression: unsup" in output
