"""contentType through a real turnout: Content-Type guessed from the body when absent."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from proxy.middlewares.content_type import detect_content_type
from tests.integration.harness import Backend, Received, Turnout, get
from tests.integration.harness import request as raw_request
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    host_router,
    module_proxy_fixture,
    service,
)

BODIES = {
    "/html": b"  \n<!DOCTYPE html><html><body>hi</body></html>",
    "/xml": b'<?xml version="1.0"?><a/>',
    "/pdf": b"%PDF-1.7\n...",
    "/png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
    "/text": b"just some words\n",
    "/bin": b"\x00\x01\x02\x03binary",
}


def responder(received: Received) -> bytes:
    path = received.target
    if path == "/typed":
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    if path == "/empty-type":
        return b"HTTP/1.1 200 OK\r\nContent-Type:\r\nContent-Length: 5\r\n\r\n<p>x "
    if path == "/empty":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    if path == "/chunked":
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\n<html>\r\n7\r\n</html>\r\n0\r\n\r\n"
        )
    body = BODIES[path]
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture(scope="module")
def proxy(module_proxy: Callable[..., Turnout]) -> Iterator[Turnout]:
    backend = Backend(responder=responder).start()
    dynamic = (
        "[http.middlewares.detect.contentType]\n"
        "[http.middlewares.legacy.contentType]\nautoDetect = true\n"
        + host_router("detect", ["detect"])
        + host_router("legacy", ["legacy"])
        + host_router("plain", [])
        + service(backend.url)
    )
    yield module_proxy(dynamic)
    backend.stop()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/html", "text/html; charset=utf-8"),
        ("/xml", "text/xml; charset=utf-8"),
        ("/pdf", "application/pdf"),
        ("/png", "image/png"),
        ("/text", "text/plain; charset=utf-8"),
        ("/bin", "application/octet-stream"),
        ("/chunked", "text/html; charset=utf-8"),
    ],
)
def test_detected_when_absent(proxy, path: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, path, host="detect.test")
    assert response.status == 200
    assert response.header_all("Content-Type") == [expected]
    assert response.body == (BODIES.get(path) or b"<html></html>")
    if path in BODIES:  # the backend's framing is kept
        assert response.header("Content-Length") == str(len(BODIES[path]))
        assert response.header("Transfer-Encoding") is None


def test_legacy_auto_detect_option_is_accepted(proxy) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, "/pdf", host="legacy.test")
    assert response.header("Content-Type") == "application/pdf"


def test_backend_type_kept(proxy) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, "/typed", host="detect.test")
    assert response.header_all("Content-Type") == ["application/json"]
    # Present but empty: Go does not sniff either.
    response = get(proxy.port, "/empty-type", host="detect.test")
    assert response.header_all("Content-Type") == [""]


def test_no_body_no_type(proxy) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, "/empty", host="detect.test")
    assert response.status == 200
    assert response.header("Content-Type") is None
    head = raw_request(proxy.port, b"HEAD /html HTTP/1.1\r\nHost: detect.test\r\n\r\n")
    assert head.status == 200
    assert head.header("Content-Type") is None


def test_without_the_middleware_nothing_is_guessed(proxy) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, "/html", host="plain.test")
    assert response.status == 200
    assert response.header("Content-Type") is None


def test_keep_alive_after_a_held_head(proxy) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.harness import ResponseReader, connect

    with connect(proxy.port) as sock:
        sock.sendall(
            b"GET /html HTTP/1.1\r\nHost: detect.test\r\n\r\n"
            b"GET /pdf HTTP/1.1\r\nHost: detect.test\r\n\r\n"
        )
        reader = ResponseReader(sock)
        assert reader.read().header("Content-Type") == "text/html; charset=utf-8"
        assert reader.read().header("Content-Type") == "application/pdf"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<HtMl>", "text/html; charset=utf-8"),
        (b"<html", "text/plain; charset=utf-8"),  # no tag-terminating byte
        (b"<!-- c -->", "text/html; charset=utf-8"),
        (b"<p>x", "text/html; charset=utf-8"),
        (b"<pre>", "text/plain; charset=utf-8"),
        (b"\xef\xbb\xbfbom", "text/plain; charset=utf-8"),
        (b"\xfe\xff\x00a", "text/plain; charset=utf-16be"),
        (b"\xff\xfea\x00", "text/plain; charset=utf-16le"),
        (b"GIF89a...", "image/gif"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wave"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video/mp4"),
        (b"\x1f\x8b\x08\x00", "application/x-gzip"),
        (b"PK\x03\x04", "application/zip"),
        (b"wOF2", "font/woff2"),
        (b"\x00asm\x01", "application/wasm"),
        (b"OggS\x00", "application/ogg"),
        (b"ID3\x03", "audio/mpeg"),
        (b'{"a": 1}', "text/plain; charset=utf-8"),
        (b"\x1b[0m", "text/plain; charset=utf-8"),  # ESC is not a binary byte
        (b"\x01\x02", "application/octet-stream"),
    ],
)
def test_detect_content_type_table(data: bytes, expected: str) -> None:
    assert detect_content_type(data) == expected
