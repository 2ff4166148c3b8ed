"""compress through a real turnout: encoding choice, exclusions, sizes, streaming."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli
import pytest
import zstandard

from proxy.middlewares.compress import choose_encoding
from tests.integration.harness import (
    Backend,
    Received,
    Response,
    Turnout,
    connect,
    get,
    read_head,
    request,
)
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    service,
)

TEXT = b"".join(b"line %d of a compressible body\n" % n for n in range(200))  # ~6 KB


def reply(body: bytes, content_type: str = "text/html", extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def respond(received: Received) -> bytes:
    path = received.target
    if path == "/small":
        return reply(TEXT[:100])
    if path == "/encoded":
        return reply(zlib.compress(TEXT), extra="Content-Encoding: deflate\r\n")
    if path == "/json":
        return reply(TEXT, "application/json; charset=utf-8")
    if path == "/grpc":
        return reply(TEXT, "application/grpc")
    if path == "/empty":
        return b"HTTP/1.1 204 No Content\r\n\r\n"
    if path == "/chunked-small":
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n%s\r\n0\r\n\r\n"
            % (TEXT[:100])
        )
    if path == "/chunked":
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(TEXT),
            TEXT,
        )
    return reply(TEXT, extra="Vary: Origin\r\n" if path == "/vary" else "")


GATE = threading.Event()


STALL = threading.Event()


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    if request.startswith(b"GET /pieces "):
        # 3 x 400 bytes, a few ms apart: the decision waits for the 1,024th byte.
        for index in range(3):
            piece = TEXT[index * 400 : (index + 1) * 400]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return
    if request.startswith(b"GET /stall "):
        writer.write(b"%x\r\n%s\r\n" % (200, TEXT[:200]))
        await writer.drain()
        while not STALL.is_set():
            await asyncio.sleep(0.01)
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(TEXT) - 200, TEXT[200:]))
        await writer.drain()
        return
    first, second = TEXT[:3000], TEXT[3000:]
    writer.write(b"%x\r\n%s\r\n" % (len(first), first))
    await writer.drain()
    while not GATE.is_set():
        await asyncio.sleep(0.01)
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
    await writer.drain()


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    plain = Backend(responder=respond).start()
    streaming = Backend(raw=stream).start()
    yield plain, streaming
    GATE.set()
    STALL.set()
    plain.stop()
    streaming.stop()


MIDDLEWARES = """
[http.middlewares.c.compress]
[http.middlewares.order.compress]
encodings = ["zstd", "br", "gzip"]
[http.middlewares.incl.compress]
includedContentTypes = ["application/json"]
[http.middlewares.excl.compress]
excludedContentTypes = ["text/html"]
[http.middlewares.min.compress]
minResponseBodyBytes = 50
[http.middlewares.def.compress]
defaultEncoding = "zstd"
"""


@pytest.fixture(scope="module")
def proxy(backends: tuple[Backend, Backend], module_proxy: Callable[..., Turnout]) -> Turnout:
    routers = "".join(host_router(n, [n]) for n in ("c", "order", "incl", "excl", "min", "def"))
    routers += host_router("stream", ["c"]).replace('service = "app"', 'service = "stream"')
    services = service(backends[0].url) + service(backends[1].url, "stream")
    return module_proxy(MIDDLEWARES + routers + services)


def fetch(proxy: Turnout, host: str, path: str = "/", accept: str | None = "gzip") -> Response:
    headers = "" if accept is None else f"Accept-Encoding: {accept}\r\n"
    return get(proxy.port, path, host=f"{host}.test", headers=headers)


def decoded(response: Response) -> bytes:
    encoding = response.header("Content-Encoding")
    if encoding == "gzip":
        return zlib.decompress(response.body, 31)
    if encoding == "br":
        return brotli.decompress(response.body)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(response.body)
    assert encoding is None, encoding
    return response.body


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_each_encoding_round_trips(proxy: Turnout, encoding: str) -> None:
    response = fetch(proxy, "c", accept=encoding)
    assert response.status == 200
    assert response.header("Content-Encoding") == encoding
    assert response.header("Content-Length") is None
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Vary") == "Accept-Encoding"
    assert len(response.body) < len(TEXT) // 3
    assert decoded(response) == TEXT


@pytest.mark.parametrize(
    ("host", "accept", "expected"),
    [
        ("c", "gzip, br, zstd", "gzip"),  # no weights: the configured order decides
        ("order", "gzip, br, zstd", "zstd"),
        ("c", "gzip;q=0.5, br;q=0.9, zstd;q=0.1", "br"),  # weights: the client decides
        ("c", "*", "br"),  # the wildcard: br when allowed
        ("c", "compress, deflate", None),
        ("c", "gzip;q=0, identity;q=0", None),
        ("c", "", None),  # present but empty: no compression
        ("c", None, None),  # absent, no defaultEncoding
        ("def", None, "zstd"),  # absent: defaultEncoding
    ],
)
def test_encoding_choice(proxy: Turnout, host: str, accept: str | None, expected: str) -> None:
    response = fetch(proxy, host, accept=accept)
    assert response.header("Content-Encoding") == expected
    assert decoded(response) == TEXT


def test_small_known_length_is_not_compressed(proxy: Turnout) -> None:
    small = fetch(proxy, "c", "/small")
    assert small.header("Content-Encoding") is None
    assert small.header("Content-Length") == "100"
    assert small.header("Vary") == "Accept-Encoding"
    assert fetch(proxy, "min", "/small").header("Content-Encoding") == "gzip"


def test_no_double_compression(proxy: Turnout) -> None:
    response = fetch(proxy, "c", "/encoded")
    assert response.header("Content-Encoding") == "deflate"
    assert zlib.decompress(response.body) == TEXT


def test_content_type_filters(proxy: Turnout) -> None:
    assert fetch(proxy, "c", "/grpc").header("Content-Encoding") is None  # always excluded
    assert fetch(proxy, "excl", "/").header("Content-Encoding") is None
    assert fetch(proxy, "excl", "/json").header("Content-Encoding") == "gzip"
    assert fetch(proxy, "incl", "/").header("Content-Encoding") is None
    json = fetch(proxy, "incl", "/json")
    assert json.header("Content-Encoding") == "gzip"
    assert decoded(json) == TEXT


def test_vary_is_extended_and_bodiless_answers_untouched(proxy: Turnout) -> None:
    assert fetch(proxy, "c", "/vary").header("Vary") == "Origin, Accept-Encoding"
    empty = fetch(proxy, "c", "/empty")
    assert empty.status == 204
    assert empty.header("Content-Encoding") is None
    head = request(proxy.port, b"HEAD / HTTP/1.1\r\nHost: c.test\r\nAccept-Encoding: gzip\r\n\r\n")
    assert head.status == 200
    assert head.header("Content-Encoding") is None
    assert head.header("Content-Length") == str(len(TEXT))


def test_chunked_backend_is_compressed(proxy: Turnout) -> None:
    response = fetch(proxy, "c", "/chunked", accept="br")
    assert response.header("Content-Encoding") == "br"
    assert decoded(response) == TEXT


def test_unknown_length_below_the_minimum_is_sent_as_is(proxy: Turnout) -> None:
    response = fetch(proxy, "c", "/chunked-small")
    assert response.status == 200
    assert response.header("Content-Encoding") is None
    assert response.body == TEXT[:100]
    assert response.header("Vary") == "Accept-Encoding"


def test_unknown_length_is_held_until_the_minimum(proxy: Turnout) -> None:
    # No single read reaches 1,024 bytes: only holding them finds the body large enough.
    response = fetch(proxy, "stream", "/pieces")
    assert response.header("Content-Encoding") == "gzip"
    assert decoded(response) == TEXT[:1200]


def test_a_stalled_stream_is_not_held(proxy: Turnout) -> None:
    STALL.clear()
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /stall HTTP/1.1\r\nHost: stream.test\r\nAccept-Encoding: gzip\r\n\r\n")
        started = time.monotonic()
        head, rest = read_head(sock)
        waited = time.monotonic() - started
        assert b"Content-Encoding" not in head  # 200 bytes when the flush came: as they are
        assert waited < 1.0, waited
        sock.settimeout(5)
        while TEXT[:200] not in rest:
            data = sock.recv(65536)
            assert data, "closed early"
            rest += data
        STALL.set()


def test_compression_streams_without_buffering_the_response(proxy: Turnout) -> None:
    GATE.clear()
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: stream.test\r\nAccept-Encoding: gzip\r\n\r\n")
        head, rest = read_head(sock)
        assert b"Content-Encoding: gzip" in head
        inflate = zlib.decompressobj(31)
        buffer, seen = rest, b""
        sock.settimeout(5)
        # The backend holds the rest back: the first part must arrive compressed anyway.
        while len(seen) < 3000:
            size_line, sep, after = buffer.partition(b"\r\n")
            if sep and len(after) >= int(size_line, 16) + 2:
                size = int(size_line, 16)
                assert size > 0, "the response ended early"
                seen += inflate.decompress(after[:size])
                buffer = after[size + 2 :]
                continue
            data = sock.recv(65536)
            assert data, "closed early"
            buffer += data
        assert seen == TEXT[:3000]
        GATE.set()


def test_choose_encoding_follows_traefik() -> None:
    allowed = ["gzip", "br", "zstd"]
    assert choose_encoding(["br;q=0.5, gzip"], allowed, "") == "br"  # weighted ones first
    assert choose_encoding(["zstd;q=0.5, gzip;q=0"], allowed, "") == "zstd"
    assert choose_encoding(["*;q=0"], allowed, "") == ""
    assert choose_encoding(["*"], ["gzip", "zstd"], "") == "gzip"


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        """
[http.middlewares.both.compress]
excludedContentTypes = ["text/html"]
includedContentTypes = ["text/plain"]
[http.middlewares.enc.compress]
encodings = ["gzip", "lzma"]
[http.middlewares.def.compress]
encodings = ["gzip"]
defaultEncoding = "br"
[http.middlewares.neg.compress]
minResponseBodyBytes = -1
[http.middlewares.mt.compress]
excludedContentTypes = ["nonsense"]
""",
    )
    assert code != 0
    assert "http.middlewares.both.compress.includedContentTypes: excludedContentTypes and" in output
    assert "http.middlewares.enc.compress.encodings[1]: unsupported encoding: lzma" in output
    assert "http.middlewares.def.compress.defaultEncoding: unsupported default encoding" in output
    assert "http.middlewares.neg.compress.minResponseBodyBytes: must not be negative" in output
    assert "http.middlewares.mt.compress.excludedContentTypes[0]: invalid media type" in output
