"""Request smuggling defences, row by row (issue 3, "Requests (client side)").

Every row sends its exact bytes in one write to a real Turnout whose backend
records every byte it receives, and checks three things: the status Turnout
answers (400, or the 501 / 505 / 414 / 431 the issue asks for), that Turnout
closes the connection, and that the backend received nothing at all.

Each row runs twice: once with a cold pool (the backend never contacted, so a
request would have to be dialled) and once with a warm pool (an idle keep-alive
connection is ready, so forwarded bytes would leave within the same read).

The second half checks the requests Turnout does forward: the pipelined request
after ``Connection: close`` is never forwarded, GET and OPTIONS bodies keep
their framing, an absolute-form target replaces Host, trailers are never merged,
and what reaches the backend has exactly one framing header and CRLF endings.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import (
    Backend,
    ResponseReader,
    Turnout,
    connect,
    dynamic_for,
    get,
    request,
    wait_closed,
    wait_until,
)

H = b"GET / HTTP/1.1\r\nHost: a\r\n"  # a request line and Host, to which a row adds its header
P = b"POST / HTTP/1.1\r\nHost: a\r\n"
CHUNKED = P + b"Transfer-Encoding: chunked\r\n\r\n"


def post_cl(value: bytes, body: bytes = b"hello") -> bytes:
    return P + b"Content-Length: " + value + b"\r\n\r\n" + body


def post_te(*values: bytes, version: bytes = b"1.1") -> bytes:
    head = b"POST / HTTP/" + version + b"\r\nHost: a\r\n"
    for value in values:
        head += b"Transfer-Encoding: " + value + b"\r\n"
    return head + b"\r\n5\r\nhello\r\n0\r\n\r\n"


def header(line: bytes) -> bytes:
    return H + line + b"\r\n\r\n"


def chunk(body: bytes) -> bytes:
    return CHUNKED + body


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
EXT_LONG = b"a;" + b"x" * 5000 + b"\r\n" + b"y" * 10 + b"\r\n0\r\n\r\n"
EXT_MANY = b"".join(b"1;ext=" + b"v" * 60 + b"\r\nz\r\n" for _ in range(80)) + b"0\r\n\r\n"

# name -> (bytes sent in one write, statuses accepted)
ROWS: dict[str, tuple[bytes, set[int]]] = {
    # -- Content-Length and Transfer-Encoding ---------------------------------------
    "cl-and-te": (
        P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        {400},
    ),
    "te-and-cl": (
        P + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
        {400},
    ),
    "two-cl-equal": (P + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", {400}),
    "two-cl-differing": (
        P + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        {400},
    ),
    "cl-list": (post_cl(b"5, 5"), {400}),
    "cl-plus": (post_cl(b"+5"), {400}),
    "cl-minus": (post_cl(b"-1"), {400}),
    "cl-hex": (post_cl(b"0x5"), {400}),
    "cl-space-inside": (post_cl(b"1 0", b"0123456789"), {400}),
    "cl-empty": (post_cl(b""), {400}),
    "cl-2-pow-64": (post_cl(b"18446744073709551616"), {400}),
    "cl-2-pow-64-plus-5": (post_cl(b"18446744073709551621"), {400}),
    "cl-huge": (post_cl(b"9" * 40), {400}),
    "te-chunked-gzip": (post_te(b"chunked, gzip"), {400, 501}),
    "te-gzip": (post_te(b"gzip"), {501}),
    "te-xchunked": (post_te(b"xchunked"), {400, 501}),
    "te-chunked-chunked": (post_te(b"chunked, chunked"), {400, 501}),
    "te-two-headers": (post_te(b"chunked", b"chunked"), {400}),
    "te-two-headers-gzip-first": (post_te(b"gzip", b"chunked"), {400, 501}),
    "te-leading-comma": (post_te(b",chunked"), {400}),
    "te-trailing-comma": (post_te(b"chunked,"), {400}),
    "te-identity": (post_te(b"identity"), {400, 501}),
    "te-vertical-tab": (post_te(b"\x0bchunked"), {400}),
    "te-in-http10": (post_te(b"chunked", version=b"1.0"), {400}),
    # -- header syntax ---------------------------------------------------------------
    "space-before-colon": (header(b"X-A : 1"), {400}),
    "tab-before-colon": (header(b"X-A\t: 1"), {400}),
    "space-before-colon-host": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", {400}),
    "space-before-colon-cl": (
        P + b"Content-Length : 5\r\n\r\nhello" + SMUGGLED,
        {400},
    ),
    "obs-fold": (H + b"X-A: 1\r\n 2\r\n\r\n", {400}),
    "obs-fold-tab": (H + b"X-A: 1\r\n\t2\r\n\r\n", {400}),
    "obs-fold-transfer-encoding": (
        P + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "whitespace-before-first-header": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", {400}),
    "tab-before-first-header": (b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", {400}),
    "bare-lf-request-line": (b"GET / HTTP/1.1\nHost: a\r\n\r\n", {400}),
    "bare-lf-header-line": (b"GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", {400}),
    "bare-lf-end-of-head": (b"GET / HTTP/1.1\r\nHost: a\r\n\n", {400}),
    "bare-lf-everywhere": (b"GET / HTTP/1.1\nHost: a\n\n", {400}),
    "bare-cr-request-line": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", {400}),
    "bare-cr-in-target": (b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "bare-cr-header-line-end": (b"GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", {400}),
    "bare-cr-end-of-head": (b"GET / HTTP/1.1\r\nHost: a\r\n\rX-A: 1\r\n\r\n", {400}),
    "bare-cr-before-end-of-head": (b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", {400}),
    "nul-in-value": (header(b"X-A: a\x00b"), {400}),
    "cr-in-value": (header(b"X-A: a\rb"), {400}),
    "lf-in-value": (header(b"X-A: a\nb"), {400}),
    "ctl-01-in-value": (header(b"X-A: a\x01b"), {400}),
    "esc-in-value": (header(b"X-A: a\x1bb"), {400}),
    "del-in-value": (header(b"X-A: a\x7fb"), {400}),
    "nul-in-host": (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", {400}),
    "paren-in-name": (header(b"X(A): 1"), {400}),
    "at-in-name": (header(b"X@A: 1"), {400}),
    "quote-in-name": (header(b'X"A: 1'), {400}),
    "slash-in-name": (header(b"X/A: 1"), {400}),
    "nul-in-name": (header(b"X\x00A: 1"), {400}),
    "space-in-name": (header(b"X A: 1"), {400}),
    "non-ascii-in-name": (header(b"X\xc3\xa9: 1"), {400}),
    "empty-name": (header(b": 1"), {400}),
    "line-without-colon": (header(b"NoColonHere"), {400}),
    # -- Host ------------------------------------------------------------------------
    "http11-without-host": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", {400}),
    "http11-absolute-form-without-host": (
        b"GET http://a/ HTTP/1.1\r\nAccept: */*\r\n\r\n",
        {400},
    ),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", {400}),
    "two-hosts-differing": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    "host-list": (b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", {400}),
    "host-userinfo": (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", {400}),
    "host-path": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
    "host-empty": (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", {400}),
    "host-space-inside": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
    "absolute-form-userinfo": (b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    # RFC 9112 3.2: a Host with an invalid value is 400 for any request, even when an
    # absolute-form target supplies the host.
    "absolute-form-with-host-list": (b"GET http://a/ HTTP/1.1\r\nHost: a, b\r\n\r\n", {400}),
    "absolute-form-with-host-path": (b"GET http://a/ HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
    "absolute-form-with-two-hosts": (
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        {400},
    ),
    # -- chunk lines -----------------------------------------------------------------
    "chunk-size-0x": (chunk(b"0x2\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-plus": (chunk(b"+2\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-minus-zero": (chunk(b"-0\r\n\r\n"), {400}),
    "chunk-size-underscore": (chunk(b"1_0\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"), {400}),
    "chunk-size-space-before": (chunk(b" 2\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-space-after": (chunk(b"2 \r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-space-inside": (chunk(b"1 0\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"), {400}),
    "chunk-size-tab-after": (chunk(b"2\t\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-empty": (chunk(b"\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-overflowing": (chunk(b"1" + b"0" * 16 + b"\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-overflowing-to-2": (
        chunk(b"10000000000000002\r\nhi\r\n0\r\n\r\n" + SMUGGLED),
        {400},
    ),
    "chunk-size-non-hex": (chunk(b"zz\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-size-g": (chunk(b"g\r\nhi\r\n0\r\n\r\n"), {400}),
    "chunk-data-longer-than-declared": (chunk(b"2\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-data-missing-crlf": (chunk(b"5\r\nhello0\r\n\r\n"), {400}),
    "chunk-data-bare-lf": (chunk(b"5\r\nhello\n0\r\n\r\n"), {400}),
    "chunk-data-bare-cr": (chunk(b"5\r\nhello\r0\r\n\r\n"), {400}),
    "chunk-size-line-bare-lf": (chunk(b"5\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-size-line-bare-cr": (chunk(b"5\rhello\r\n0\r\n\r\n"), {400}),
    "last-chunk-bare-lf": (chunk(b"5\r\nhello\r\n0\n\r\n"), {400}),
    "end-of-chunked-body-bare-lf": (chunk(b"5\r\nhello\r\n0\r\n\n"), {400}),
    "chunk-ext-bare-semicolon": (chunk(b"5;\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-empty-between": (chunk(b"5;a;;b\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-empty-name": (chunk(b"5;=v\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-nul": (chunk(b"5;a\x00b\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-lf": (chunk(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-cr": (chunk(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk-ext-over-4k": (chunk(EXT_LONG), {400}),
    "chunk-ext-over-4k-in-total": (chunk(EXT_MANY), {400}),
    "trailer-bare-lf": (chunk(b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"), {400}),
    "trailer-obs-fold": (chunk(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"), {400}),
    "trailer-nul": (chunk(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"), {400}),
    # -- request line ------------------------------------------------------------------
    "http-1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", {400, 505}),
    "http-2.0": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", {400, 505}),
    "http-9.9": (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", {400, 505}),
    "http-0.9-version": (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", {400, 505}),
    "http-0.9-request": (b"GET /\r\n\r\n", {400, 505}),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    "lowercase-version": (b"GET / http/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-space": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-tab": (b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-nul": (b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-non-ascii": (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-del": (b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    "target-fragment": (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    # Not here: "GET  / HTTP/1.1" (two spaces). llhttp accepts it and Turnout does
    # not see the raw line; it cannot smuggle anything, since the forwarded request
    # line is rebuilt with single spaces (README, compatibility table).
    "target-over-8k": (b"GET /" + b"t" * 8200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", {414}),
    "head-over-32k": (header(b"X-Big: " + b"b" * 33000), {431}),
    "head-over-32k-in-many-headers": (
        H + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(34)) + b"\r\n",
        {431},
    ),
    "101-headers": (H + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n", {431}),
    "10000-headers": (H + b"X: v\r\n" * 10000 + b"\r\n", {431}),
}


# -- fixtures: one Turnout per pool state for the whole table -----------------------


@pytest.fixture(scope="module")
def recording() -> Iterator[Backend]:
    server = Backend().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxies(tmp_path_factory, recording) -> Iterator[dict[str, Turnout]]:
    """A "cold" Turnout whose pool is never warmed, and a "warm" one kept warm."""
    started = {}
    for name in ("cold", "warm"):
        workdir = tmp_path_factory.mktemp(f"turnout-{name}")
        started[name] = Turnout(workdir, dynamic_for(recording.url)).start()
    time.sleep(0.3)  # the start-up port probe has come and gone
    for proxy in started.values():
        proxy.baseline = proxy.stats()  # type: ignore[attr-defined]
    yield started
    for proxy in started.values():
        assert proxy.stop() == 0, proxy.stderr()


def send_row(port: int, raw: bytes) -> tuple[int, bool, bytes, bytes]:
    """Send raw in one write: (status, closed, the answer's head, anything after it)."""
    with connect(port) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        try:
            response = ResponseReader(sock).read()
        except (ConnectionError, TimeoutError):
            return 0, True, b"", b""  # closed (or silent) without an answer: status 0
        closed, extra = wait_closed(sock, 1)
    head = ("\n".join(f"{k}: {v}" for k, v in response.headers)).encode()
    return response.status, closed, head, extra


@pytest.mark.parametrize("pool", ["cold", "warm"])
@pytest.mark.parametrize("row", list(ROWS))
def test_row_is_refused_closed_and_nothing_reaches_the_backend(proxies, recording, row, pool):
    raw, statuses = ROWS[row]
    proxy = proxies[pool]
    if pool == "warm":
        assert get(proxy.port).status == 200  # leaves an idle pooled connection
        assert wait_until(lambda: len(recording.requests) > 0, 2)
    recording.raw_bytes.clear()
    recording.requests.clear()
    status, closed, head, extra = send_row(proxy.port, raw)
    time.sleep(0.05)  # a late forward (after a dial) would land by now
    assert status in statuses, f"{row}: answered {status}, wanted {sorted(statuses)}"
    assert b"connection: close" in head.lower(), head
    assert closed, f"{row}: the connection was left open"
    assert extra == b"", f"{row}: sent more after the error: {extra[:200]!r}"
    assert bytes(recording.raw_bytes) == b"", (
        f"{row}: the backend received {bytes(recording.raw_bytes)[:300]!r}"
    )
    assert "Traceback" not in proxy.stderr()


# -- configurable limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(tmp_path_factory, recording) -> Iterator[Turnout]:
    workdir = tmp_path_factory.mktemp("turnout-tight")
    proxy = Turnout(
        workdir,
        dynamic_for(recording.url),
        entrypoint_extra="transport.maxRequestTargetBytes = 1024\n"
        "transport.maxHeaderCount = 10\n"
        "transport.maxHeaderBytes = 4096",
    ).start()
    yield proxy
    assert proxy.stop() == 0, proxy.stderr()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"t" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (H + b"".join(b"X-H%d: v\r\n" % i for i in range(10)) + b"\r\n", 431),
        (header(b"X-Big: " + b"b" * 4200), 431),
    ],
    ids=["target", "header-count", "header-bytes"],
)
def test_limits_are_configurable(tight, recording, raw, status):
    recording.raw_bytes.clear()
    got, closed, _, _ = send_row(tight.port, raw)
    assert (got, closed) == (status, True)
    assert bytes(recording.raw_bytes) == b""
    # Just under each limit passes.
    assert get(tight.port, "/" + "t" * 900).status == 200
    many = "".join(f"X-H{i}: v\r\n" for i in range(8))  # with Host: 9 headers
    assert get(tight.port, headers=many).status == 200
    assert get(tight.port, headers="X-Big: " + "b" * 3800 + "\r\n").status == 200


def test_default_limits_are_not_stricter_than_the_issue_says(proxies, recording):
    proxy = proxies["warm"]
    recording.requests.clear()
    # A target of 8 KiB, 99 headers besides Host and a head just under 32 KiB all pass.
    assert get(proxy.port, "/" + "t" * 8000).status == 200
    many = "".join(f"X-H{i}: v\r\n" for i in range(99))
    assert get(proxy.port, headers=many).status == 200
    assert get(proxy.port, headers="X-Big: " + "b" * 32000 + "\r\n").status == 200
    assert len(recording.requests) == 3


# -- what is forwarded ---------------------------------------------------------------------


def forwarded_heads(raw: bytes) -> list[bytes]:
    """The request heads in the bytes a backend received."""
    return re.findall(
        rb"(?:GET|POST|OPTIONS|PUT|HEAD) [^\r\n]* HTTP/1\.1\r\n.*?\r\n\r\n", raw, re.S
    )


def assert_strict_framing(raw: bytes, count: int) -> list[bytes]:
    """Every head has CRLF endings only and exactly one framing header (or none, without body)."""
    heads = forwarded_heads(raw)
    assert len(heads) == count, raw
    for head in heads:
        assert b"\n" not in head.replace(b"\r\n", b""), f"bare LF in {head!r}"
        assert b"\r" not in head.replace(b"\r\n", b""), f"bare CR in {head!r}"
        assert b"\x00" not in head
        lines = head.lower().split(b"\r\n")
        cl = [line for line in lines if line.startswith(b"content-length:")]
        te = [line for line in lines if line.startswith(b"transfer-encoding:")]
        assert len(cl) + len(te) <= 1, f"framing copied, not rebuilt: {head!r}"
        if te:
            assert te == [b"transfer-encoding: chunked"], head
        if cl:
            assert re.fullmatch(rb"content-length: [0-9]+", cl[0]), head
    return heads


@pytest.fixture
def proxied(backend, turnout) -> tuple[Backend, Turnout]:
    server = backend()
    return server, turnout(dynamic_for(server.url))


def test_pipelined_request_after_connection_close_is_never_forwarded(proxied):
    server, proxy = proxied
    raw = (
        b"GET /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /third HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    )
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        reader = ResponseReader(sock)
        response = reader.read()
        closed, extra = wait_closed(sock, 3)
    time.sleep(0.1)
    assert response.status == 200
    assert closed and extra == b"", extra
    assert [r.target for r in server.requests] == ["/first"]
    assert b"/second" not in bytes(server.raw_bytes)
    assert b"/third" not in bytes(server.raw_bytes)


def test_pipelined_request_after_http10_without_keep_alive_is_never_forwarded(proxied):
    server, proxy = proxied
    raw = b"GET /first HTTP/1.0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n"
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        response = ResponseReader(sock).read()
        closed, extra = wait_closed(sock, 3)
    time.sleep(0.1)
    assert response.status == 200
    assert closed and extra == b""
    assert [r.target for r in server.requests] == ["/first"]


def test_pipelined_after_connection_close_on_a_warm_pool(proxied):
    server, proxy = proxied
    assert get(proxy.port, "/warm").status == 200
    raw = (
        b"GET /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        response = ResponseReader(sock).read()
        closed, _ = wait_closed(sock, 3)
    time.sleep(0.1)
    assert response.status == 200 and closed
    assert [r.target for r in server.requests] == ["/warm", "/first"]


@pytest.mark.parametrize("pool", ["cold", "warm"])
def test_valid_request_pipelined_before_a_bad_one_is_answered(proxied, pool):
    # The good request is complete and must be served; the bad one after it is refused.
    server, proxy = proxied
    if pool == "warm":
        assert get(proxy.port, "/warm").status == 200
    raw = (
        b"GET /good HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    )
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        reader = ResponseReader(sock)
        first = reader.read(3)
        second = reader.read(3)
        closed, _ = wait_closed(sock, 3)
    assert (first.status, second.status, closed) == (200, 400, True)
    assert [r.target for r in server.requests if r.target != "/warm"] == ["/good"]
    assert b"/bad" not in bytes(server.raw_bytes)


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
def test_get_and_options_with_a_content_length_body_forward_it_intact(proxied, method):
    server, proxy = proxied
    body = b"a body on a " + method
    raw = method + b" /b HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert request(proxy.port, raw).status == 200
    [received] = server.requests
    assert (received.method, received.body) == (method.decode(), body)
    [head] = assert_strict_framing(bytes(server.raw_bytes), 1)
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head
    assert bytes(server.raw_bytes).endswith(b"\r\n\r\n" + body)


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
def test_get_and_options_with_a_chunked_body_forward_it_intact(proxied, method):
    server, proxy = proxied
    raw = (
        method + b" /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n"
    )
    assert request(proxy.port, raw).status == 200
    [received] = server.requests
    assert (received.method, received.body) == (method.decode(), b"wikipedia")
    [head] = assert_strict_framing(bytes(server.raw_bytes), 1)
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head
    assert bytes(server.raw_bytes).endswith(b"0\r\n\r\n")


def test_get_without_body_gets_no_framing_header(proxied):
    server, proxy = proxied
    assert get(proxy.port).status == 200
    [head] = assert_strict_framing(bytes(server.raw_bytes), 1)
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding" not in head.lower()


def test_absolute_form_target_replaces_host(proxied):
    server, proxy = proxied
    raw = b"GET http://real.example:8080/p?q=1 HTTP/1.1\r\nHost: decoy.example\r\n\r\n"
    assert request(proxy.port, raw).status == 200
    [received] = server.requests
    assert received.target == "/p?q=1"
    assert received.header_all("host") == ["real.example:8080"]
    assert b"decoy" not in bytes(server.raw_bytes).split(b"\r\nX-Forwarded")[0]
    assert received.header("x-forwarded-host") == "real.example:8080"


def test_absolute_form_target_routes_on_its_authority(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url, rule="Host(`real.example`)"))
    raw = b"GET http://real.example/p HTTP/1.1\r\nHost: decoy.example\r\n\r\n"
    assert request(proxy.port, raw).status == 200
    raw = b"GET http://decoy.example/p HTTP/1.1\r\nHost: real.example\r\n\r\n"
    assert request(proxy.port, raw).status == 404
    assert len(server.requests) == 1


def test_trailers_are_never_merged_into_forwarded_headers(proxied):
    server, proxy = proxied
    raw = (
        chunk(b"5\r\nhello\r\n0\r\nX-Trailer: t1\r\nHost: evil\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        + b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        reader = ResponseReader(sock)
        assert reader.read().status == 200
        assert reader.read().status == 200
    data = bytes(server.raw_bytes)
    assert [r.target for r in server.requests] == ["/", "/after"]
    first = server.requests[0]
    assert first.body == b"hello"
    assert first.header("x-trailer") is None
    assert first.header_all("host") == ["a"]
    assert b"X-Trailer" not in data and b"evil" not in data and b"6.6.6.6" not in data
    assert_strict_framing(data, 2)


def test_percent_encoded_crlf_in_the_target_cannot_split_the_forwarded_head(proxied):
    server, proxy = proxied
    raw = b"GET /a%0d%0aX-Injected:%201%0d%0a HTTP/1.1\r\nHost: a\r\n\r\n"
    assert request(proxy.port, raw).status == 200
    [received] = server.requests
    assert received.target == "/a%0d%0aX-Injected:%201%0d%0a"
    assert received.header("x-injected") is None
    assert_strict_framing(bytes(server.raw_bytes), 1)


def test_forwarded_framing_is_rebuilt_for_odd_but_valid_input(proxied):
    # Case and whitespace variants are valid; what leaves is Turnout's own framing.
    server, proxy = proxied
    raws = [
        P + b"content-LENGTH:   5\r\n\r\nhello",
        P + b"TRANSFER-ENCODING: Chunked\r\n\r\n005\r\nhello\r\n0\r\n\r\n",
        P + b'Transfer-Encoding:\tchunked\r\n\r\n5;a=b;c\r\nhello\r\n0;x="y z"\r\n\r\n',
        P + b"Content-Length: 0005\r\n\r\nhello",
    ]
    for raw in raws:
        assert request(proxy.port, raw).status == 200, raw
    assert [r.body for r in server.requests] == [b"hello"] * 4
    heads = assert_strict_framing(bytes(server.raw_bytes), 4)
    assert b"\r\nContent-Length: 5\r\n" in heads[0]
    assert b"\r\nTransfer-Encoding: chunked\r\n" in heads[1]
    assert b"\r\nTransfer-Encoding: chunked\r\n" in heads[2]
    assert b"\r\nContent-Length: 5\r\n" in heads[3]
    assert b"5;a=b" not in bytes(server.raw_bytes)  # chunk extensions are not passed on


@pytest.mark.parametrize(
    ("line", "check"),
    [
        (b"Content-Length: 5 \t ", ("content-length", "5")),
        (b"Host: a.example:8080\t", ("host", "a.example:8080")),
    ],
    ids=["content-length", "host"],
)
def test_trailing_whitespace_is_not_part_of_a_field_value(proxied, line, check):
    # RFC 9110 5.5: a field value excludes leading and trailing whitespace, so these
    # are Content-Length 5 and Host a.example:8080; Traefik (Go), nginx and HAProxy
    # accept both.
    server, proxy = proxied
    head = b"POST / HTTP/1.1\r\n" + (b"" if line.startswith(b"Host") else b"Host: a\r\n")
    raw = head + line + b"\r\n" + (b"" if line.startswith(b"Content") else b"Content-Length: 5\r\n")
    assert request(proxy.port, raw + b"\r\nhello").status == 200
    [received] = server.requests
    assert received.body == b"hello"
    assert received.header_all(check[0]) == [check[1]]
    assert_strict_framing(bytes(server.raw_bytes), 1)


def test_spoofed_x_forwarded_headers_are_replaced_with_clean_values(proxied):
    server, proxy = proxied
    raw = (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"X-Forwarded-Host: evil\r\nX-Real-Ip: 6.6.6.6\r\n\r\n"
    )
    assert request(proxy.port, raw).status == 200
    [received] = server.requests
    assert received.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert received.header_all("x-real-ip") == ["127.0.0.1"]
    assert received.header_all("x-forwarded-host") == ["a"]
    assert_strict_framing(bytes(server.raw_bytes), 1)


def test_the_table_left_nothing_behind(proxies):
    # Every refused connection is gone: no client connection, task or descriptor left
    # beyond the pooled upstream connections that the warm pool keeps on purpose.
    for name, proxy in proxies.items():
        baseline = proxy.baseline
        assert wait_until(lambda p=proxy: p.stats()["connections"]["web"] == 0, 3), name
        stats = proxy.stats()
        assert stats["tasks"] <= baseline["tasks"], (name, stats, baseline)
        assert stats["fds"] - stats["upstream_open"] <= baseline["fds"], (name, stats, baseline)
        assert stats["upstream_open"] == stats["upstream_idle"], (name, stats)
        assert "Traceback" not in proxy.stderr()
