"""buffering through a real turnout: whole bodies before the service, 413, 500."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import assert_back_to_baseline
from tests.integration.harness import (
    Backend,
    Received,
    Response,
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


TEXT = b"".join(b"line %d of a compressible body\n" % n for n in range(200))  # ~6 KB
NOISE = random.Random(6).randbytes(20_000)  # does not compress: past every limit here
TRIES: dict[str, int] = {}  # tries seen per /unavailable-N target


def respond(received: Received) -> bytes:
    if received.target.startswith("/unavailable-"):
        # 503 on the first try of /unavailable-1, on every try of /unavailable-always.
        seen = TRIES[received.target] = TRIES.get(received.target, 0) + 1
        if seen == 1 or received.target.endswith("always"):
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\ntry again"
        return ok_response(b"got " + received.body)
    if received.target == "/big":
        return ok_response(b"x" * 5000)
    if received.target == "/big-chunked":
        return chunked(b"x" * 2500, b"y" * 2500)
    if received.target == "/noise":
        return ok_response(NOISE)
    if received.target == "/noise-chunked":
        return chunked(NOISE[:5000], NOISE[5000:])
    if received.target == "/text-chunked":
        return chunked(TEXT[:3000], TEXT[3000:])
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
memResponseBodyBytes = 1000
[http.middlewares.retrying.buffering]
retryExpression = "IsNetworkError() && Attempts() < 3"
[http.middlewares.tagged.headers.customResponseHeaders]
X-Outer = "seen"
[http.middlewares.squeeze.compress]
encodings = ["gzip"]
[http.middlewares.squeeze2.compress]
[http.middlewares.status.buffering]
retryExpression = "ResponseCode() == 503 && Attempts() < 3"
"""


@pytest.fixture(scope="module")
def proxy(
    app: Backend,
    flaky: Backend,
    slow: Backend,
    dying: Backend,
    module_proxy: Callable[..., Turnout],
) -> Turnout:
    routers = host_router("limited", ["limited"]) + host_router("spill", ["spill"])
    routers += host_router("status", ["status"]) + host_router("outer", ["tagged", "limited"])
    routers += host_router("retrying", ["retrying"]).replace('service = "app"', 'service = "flaky"')
    routers += host_router("slow", ["spill"]).replace('service = "app"', 'service = "slow"')
    routers += host_router("dying", ["tagged", "spill"]).replace(
        'service = "app"', 'service = "dying"'
    )
    routers += host_router("unbuffered", ["tagged"]).replace('service = "app"', 'service = "dying"')
    # compress inside buffering (listed after it), and outside.
    routers += host_router("inside", ["spill", "squeeze"])
    routers += host_router("outside", ["squeeze", "spill"])
    routers += host_router("bounded", ["limited", "squeeze"])
    routers += host_router("twice", ["squeeze2", "spill", "squeeze"])
    services = service(app.url) + service(flaky.url, "flaky") + service(slow.url, "slow")
    services += service(dying.url, "dying")
    proxy = module_proxy(MIDDLEWARES + routers + services)
    BASELINE[proxy.port] = proxy.stats()
    return proxy


BASELINE: dict[int, dict[str, object]] = {}


GATE = threading.Event()  # the slow backend sends the rest of its body once set
SLOW_PARTS = [b"a" * 3000, b"b" * 3000]


async def slow_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A chunked response: its first part at once, the rest when the test opens GATE."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Slow: 1\r\n\r\n")
    writer.write(chunk(SLOW_PARTS[0]))
    await writer.drain()
    while not GATE.is_set():
        await asyncio.sleep(0.01)
    writer.write(chunk(SLOW_PARTS[1]) + b"0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def slow() -> Iterator[Backend]:
    server = Backend(raw=slow_handle).start()
    yield server
    server.stop()


async def dying_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Announces 5000 bytes (or chunks), sends 3000, then closes: a backend dying mid-body."""
    head, _ = await read_request(reader)
    if head.startswith(b"GET /chunked "):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk(b"a" * 3000) + b"1388\r\n" + b"b" * 100)  # 5000 announced, 100 sent
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"a" * 3000)
    await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def dying() -> Iterator[Backend]:
    server = Backend(raw=dying_handle).start()
    yield server
    server.stop()


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
    # Held whole, it goes to the backend with a Content-Length, as Traefik sends it.
    sent = app.requests[-1]
    assert (sent.header("Content-Length"), sent.header("Transfer-Encoding")) == ("1000", None)
    assert sent.body == b"a" * 500 + b"b" * 500


def test_a_chunked_body_arriving_with_its_head_gets_a_length(proxy: Turnout, app: Backend) -> None:
    request = post_head("limited", "Transfer-Encoding: chunked\r\n")
    with connect(proxy.port) as sock:
        sock.sendall(request + chunk(b"pay") + chunk(b"load") + b"0\r\n\r\n")
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got 7")
    sent = app.requests[-1]
    assert (sent.header("Content-Length"), sent.header("Transfer-Encoding")) == ("7", None)
    assert sent.body == b"payload"


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
    assert app.requests[-1].header("Content-Length") == "3000000"


def test_a_response_over_the_maximum_is_500(proxy: Turnout) -> None:
    big = get(proxy.port, "/big", host="limited.test")
    assert (big.status, big.body) == (500, b"Internal Server Error")
    assert get(proxy.port, "/", host="limited.test").status == 200
    assert get(proxy.port, "/big", host="spill.test").status == 200  # no maximum


def test_a_response_without_length_is_bounded_too(proxy: Turnout) -> None:
    big = get(proxy.port, "/big-chunked", host="limited.test")
    assert (big.status, big.body) == (500, b"Internal Server Error")
    assert big.header("Content-Length") == "21"
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


def test_a_chunked_response_is_sent_whole_with_its_length(proxy: Turnout) -> None:
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /fits-chunked HTTP/1.1\r\nHost: limited.test\r\n\r\n")
        response = ResponseReader(sock).read()
        assert response.status == 200
        assert response.header("Content-Length") == "4000"
        assert response.header("Transfer-Encoding") is None
        assert response.body == b"x" * 2000 + b"y" * 2000
        # The connection stays usable: the framing was right.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: limited.test\r\n\r\n")
        assert ResponseReader(sock).read().status == 200


def test_a_response_past_memory_is_held_in_a_temporary_file(proxy: Turnout) -> None:
    GATE.clear()
    before = spool_files(proxy)
    files = len(before)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        # 3000 bytes held, past memResponseBodyBytes = 1000: in a deleted temporary file.
        assert wait_until(lambda: len(spool_files(proxy)) == files + 1, 3)
        (held,) = set(spool_files(proxy)) - set(before)
        assert held.endswith(" (deleted)"), held
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # nothing of the response yet, not even the head
        sock.settimeout(None)
        GATE.set()
        response = ResponseReader(sock).read()
    assert response.status == 200
    assert response.header("X-Slow") == "1"
    assert response.header("Content-Length") == "6000"
    assert response.header("Transfer-Encoding") is None
    assert response.body == b"".join(SLOW_PARTS)
    assert wait_until(lambda: len(spool_files(proxy)) == files, 3)  # deleted with the exchange


def test_a_large_response_goes_through_the_file_intact(proxy: Turnout) -> None:
    files = len(spool_files(proxy))
    for _ in range(3):
        response = get(proxy.port, "/big-chunked", host="spill.test")
        assert response.header("Content-Length") == "5000"
        assert response.body == b"x" * 2500 + b"y" * 2500
    assert wait_until(lambda: len(spool_files(proxy)) == files, 3)


def test_a_backend_503_is_retried_with_the_held_body(proxy: Turnout, app: Backend) -> None:
    before = len(app.requests)
    request = b"POST /unavailable-1 HTTP/1.1\r\nHost: status.test\r\nContent-Length: 7\r\n\r\n"
    with connect(proxy.port) as sock:
        sock.sendall(request + b"payload")
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got payload")
    tries = app.requests[before:]
    assert [(r.target, r.body) for r in tries] == [("/unavailable-1", b"payload")] * 2


def test_a_chunked_body_is_sent_again_on_503(proxy: Turnout, app: Backend) -> None:
    TRIES.pop("/unavailable-1", None)
    before = len(app.requests)
    with connect(proxy.port) as sock:
        sock.sendall(
            post_head("status", "Transfer-Encoding: chunked\r\n").replace(b"/up", b"/unavailable-1")
            + chunk(b"pay")
            + chunk(b"load")
            + b"0\r\n\r\n"
        )
        response = ResponseReader(sock).read()
    assert (response.status, response.body) == (200, b"got payload")
    assert [r.body for r in app.requests[before:]] == [b"payload", b"payload"]


def test_retries_on_status_stop_as_the_expression_says(proxy: Turnout, app: Backend) -> None:
    before = len(app.requests)
    response = get(proxy.port, "/unavailable-always", host="status.test")
    # Attempts() < 3: the third try's answer is the client's, its body whole.
    assert (response.status, response.body) == (503, b"try again")
    assert response.header("Content-Length") == "9"
    assert len(app.requests) - before == 3
    other = get(proxy.port, "/", host="status.test")  # a 200 is not retried
    assert other.status == 200
    assert len(app.requests) - before == 4


def test_the_500_passes_through_the_middlewares_outside(proxy: Turnout) -> None:
    for target in ("/big", "/big-chunked"):  # refused on its length, and once held past it
        with connect(proxy.port) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: outer.test\r\n\r\n".encode())
            response = ResponseReader(sock).read()
            assert (response.status, response.body) == (500, b"Internal Server Error")
            assert response.header("X-Outer") == "seen"  # headers, outside buffering, saw it
            assert response.header("Content-Length") == "21"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: outer.test\r\n\r\n")  # still usable
            assert ResponseReader(sock).read().status == 200


@pytest.mark.parametrize("target", ["/length", "/chunked"])
def test_a_backend_dying_mid_held_body_is_a_500(proxy: Turnout, target: str) -> None:
    files = len(spool_files(proxy))
    with connect(proxy.port) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: dying.test\r\n\r\n".encode())
        response = ResponseReader(sock).read()
        # Nothing of the held response was sent: a whole 500, as Traefik's recovery
        # handler writes it, outside every middleware (headers did not see it).
        assert (response.status, response.body) == (500, b"Internal Server Error\n")
        assert response.header("Content-Length") == "22"
        assert response.header("Content-Type") == "text/plain; charset=utf-8"
        assert response.header("X-Outer") is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: spill.test\r\n\r\n")  # still usable
        assert ResponseReader(sock).read().status == 200
    assert wait_until(lambda: len(spool_files(proxy)) == files, 3)  # the held file went


def test_without_buffering_a_backend_dying_mid_body_cuts_the_client(proxy: Turnout) -> None:
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /length HTTP/1.1\r\nHost: unbuffered.test\r\n\r\n")
        closed, data = wait_closed(sock)
    assert closed  # the head went out at once: the client can only see the cut
    assert b"500" not in data.split(b"\r\n", 1)[0]
    assert len(data.partition(b"\r\n\r\n")[2]) < 5000


def gzip_get(proxy: Turnout, target: str, host: str) -> Response:
    with connect(proxy.port) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n\r\n".encode()
        )
        response = ResponseReader(sock).read()
        # The framing was right: the connection goes on.
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert ResponseReader(sock).read().status == 200
    return response


@pytest.mark.parametrize(
    ("target", "body"),
    [("/big", b"x" * 5000), ("/text-chunked", TEXT), ("/noise", NOISE)],
)
def test_compress_inside_buffering_gives_the_compressed_length(
    proxy: Turnout, target: str, body: bytes
) -> None:
    # Backend Content-Length, chunked (compress decides on minResponseBodyBytes),
    # and a body that stays large (held in the temporary file, compressed).
    files = len(spool_files(proxy))
    response = gzip_get(proxy, target, "inside.test")
    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    assert response.header("Transfer-Encoding") is None
    assert response.header("Content-Length") == str(len(response.body))
    assert zlib.decompress(response.body, 31) == body
    assert wait_until(lambda: len(spool_files(proxy)) == files, 3)


def test_compress_on_both_sides_of_buffering_compresses_once(proxy: Turnout) -> None:
    # The inner one decides while the body is held; the outer one then sees it encoded.
    response = gzip_get(proxy, "/noise-chunked", "twice.test")
    assert response.header("Content-Encoding") == "gzip"
    assert response.header("Content-Length") == str(len(response.body))
    assert zlib.decompress(response.body, 31) == NOISE


def test_compress_outside_buffering_streams(proxy: Turnout) -> None:
    response = gzip_get(proxy, "/big", "outside.test")
    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    # Held whole, then compressed as it goes out: no length known up front.
    assert (response.header("Transfer-Encoding"), response.header("Content-Length")) == (
        "chunked",
        None,
    )
    assert zlib.decompress(response.body, 31) == b"x" * 5000


def test_inside_buffering_the_maximum_bounds_the_compressed_body(proxy: Turnout) -> None:
    # maxResponseBodyBytes = 4000: 5000 bytes that compress to a few dozen are held ...
    small = gzip_get(proxy, "/big", "bounded.test")
    assert (small.status, small.header("Content-Encoding")) == (200, "gzip")
    assert zlib.decompress(small.body, 31) == b"x" * 5000
    # ... 20000 that do not compress are a 500, as before.
    large = gzip_get(proxy, "/noise", "bounded.test")
    assert (large.status, large.body) == (500, b"Internal Server Error")
    assert large.header("Content-Encoding") is None


def test_a_client_leaving_a_held_response_leaks_nothing(proxy: Turnout) -> None:
    GATE.clear()
    before = spool_files(proxy)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        assert wait_until(lambda: len(spool_files(proxy)) == len(before) + 1, 3)
    # The client left while its response was held in a file: the file goes with it.
    assert wait_until(lambda: spool_files(proxy) == before, 3)
    GATE.set()
    assert get(proxy.port, "/", host="status.test").status == 200
    # Every held response, retry and 500 of this module: no fd, task or connection left.
    assert_back_to_baseline(proxy, BASELINE[proxy.port])
