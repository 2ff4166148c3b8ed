"""Misbehaving backends (issue 3, "Responses (backend side)").

A response head Turnout cannot trust (a status outside 100-599, both
Content-Length and Transfer-Encoding, two Content-Length headers, obs-fold, NUL
or a bare LF) is answered 502, and the backend connection that sent it is
closed, never pooled. HEAD, 1xx, 204 and 304 responses end with their head
whatever framing headers they carry. A body delimited by the backend closing
ends when it closes; a chunked body cut short reaches the client cut short.

Turnout reads a response head's lines from the bytes once llhttp has accepted
it (upstream.UpstreamConnection._read_head), so heads that arrive in pieces,
heads past the 64 KiB limit, pipelined responses and 1xx responses (passed on
as Go's ReverseProxy does, at most five) are checked here too.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    recv_all,
    wait_closed,
    wait_until,
)

BAD_HEADS = {
    "status-099": b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
    "status-000": b"HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok",
    "status-600": b"HTTP/1.1 600 Beyond\r\nContent-Length: 2\r\n\r\nok",
    "status-999": b"HTTP/1.1 999 Beyond\r\nContent-Length: 2\r\n\r\nok",
    "status-two-digits": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "cl-and-te": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "te-and-cl": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "two-cl-equal": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "two-cl-differing": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "cl-not-digits": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold-tab": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\t2\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-name": b"HTTP/1.1 200 OK\r\nX\x00A: 1\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok",
    "cr-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "bare-lf-status-line": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
    "bare-lf-header-line": b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX-A: 1\r\n\r\nok",
    "bare-lf-end-of-head": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok",
    "bare-lf-everywhere": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "line-without-colon": b"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nok",
}


class Misbehaving:
    """A raw backend that answers every request with fixed bytes and records how
    each of its connections ended: ``closed_by_proxy`` counts the connections on
    which Turnout closed its side within 3 s of the answer."""

    def __init__(self, answer: bytes, *, then_close: bool = False) -> None:
        self.answer = answer
        self.then_close = then_close
        self.closed_by_proxy = 0
        self.still_open = 0
        self.heads: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.heads.append(head)
            writer.write(self.answer)
            await writer.drain()
            if self.then_close:
                return
            try:
                more = await asyncio.wait_for(reader.read(1), 3)
            except TimeoutError:
                self.still_open += 1
                return
            except ConnectionError:
                more = b""
            if not more:
                self.closed_by_proxy += 1
                return
            # Turnout reused this connection: serve the next request normally.
            rest = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(more + rest)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nreused")
            await writer.drain()


@pytest.mark.parametrize("case", list(BAD_HEADS))
def test_untrustworthy_response_head_is_502_and_the_connection_discarded(backend, turnout, case):
    behaviour = Misbehaving(BAD_HEADS[case])
    server = backend(raw=behaviour)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        first = reader.read()
        assert first.status == 502, f"{case}: the client got {first.status} {first.body[:100]!r}"
        # The client connection itself is fine: a 502 is not a client error.
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            second = reader.read()
        except ConnectionError:
            second = None
    assert wait_until(lambda: behaviour.closed_by_proxy + behaviour.still_open >= 1, 4)
    assert behaviour.still_open == 0, f"{case}: Turnout kept the backend connection open"
    assert behaviour.closed_by_proxy >= 1
    assert server.connections >= 2 or second is None, "the bad connection was reused"
    if second is not None:
        assert second.status == 502, second
    assert b"ok" not in first.body


# -- bodies that end with the head -----------------------------------------------------


def _respond_then_serve(answer: bytes):
    """Answer the first request with ``answer``; later ones on any connection with 200 'next'."""
    seen: list[bytes] = []

    async def handler(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            seen.append(head)
            if len(seen) == 1:
                writer.write(answer)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
            await writer.drain()

    return handler, seen


def _up_to_final(reader: ResponseReader) -> list:
    """The responses to one request: its interim ones (1xx), then its answer."""
    responses = [reader.read(3)]
    while responses[-1].status < 200:
        responses.append(reader.read(3))
    return responses


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nX-No-Framing: 1\r\n\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ],
    ids=[
        "head-cl",
        "head-chunked",
        "head-no-framing",
        "204-cl",
        "204-chunked",
        "204",
        "304-cl",
        "304-chunked",
    ],
)
def test_bodiless_responses_end_with_their_head(backend, turnout, method, answer):
    handler, seen = _respond_then_serve(answer)
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    status = int(answer.split()[1])
    with connect(proxy.port) as sock:
        started = time.monotonic()
        sock.sendall(method + b" /first HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock, 3)
        elapsed = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 %d" % status), head
        assert rest == b"", f"bytes after a bodiless head: {rest!r}"
        assert b"transfer-encoding" not in head.lower() or method == b"HEAD", head
        # The same client connection goes on, and its next answer is not mistaken
        # for (or swallowed as) a body of the first.
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
        following = ResponseReader(sock).read(3)
    assert elapsed < 1, f"the bodiless response took {elapsed:.2f} s to arrive"
    assert (following.status, following.body) == (200, b"next")
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["204-cl", "204-chunked", "304-cl", "head-cl", "head-chunked"],
)
def test_body_a_backend_sends_anyway_never_reaches_the_client(backend, turnout, method, answer):
    # The response ended with its head; what the backend sends after it is not
    # a body, and only the backend connection that sent it pays for it.
    handler, _ = _respond_then_serve(answer)
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(method + b" /first HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock, 3)
        assert head.startswith(b"HTTP/1.1 " + answer.split()[1])
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
        following = ResponseReader(sock).read(3)
    assert rest == b"", rest
    assert (following.status, following.body) == (200, b"next")
    assert b"hello" not in following.body


@pytest.mark.parametrize("interim", [b"100 Continue", b"102 Processing", b"103 Early Hints"])
def test_interim_responses_end_with_their_head(backend, turnout, interim):
    answer = (
        b"HTTP/1.1 " + interim + b"\r\nContent-Length: 7\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
    )
    handler, _ = _respond_then_serve(answer)
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
        )
        responses = _up_to_final(ResponseReader(sock))
    final = responses[-1]
    assert (final.status, final.body) == (200, b"final")
    for response in responses[:-1]:
        assert response.body == b""


@pytest.mark.parametrize(
    ("request_line", "forwarded"),
    [(b"GET / HTTP/1.1", True), (b"GET / HTTP/1.0", False)],
    ids=["http11", "http10"],
)
def test_early_hints_reach_http11_clients_that_did_not_ask(
    backend, turnout, request_line, forwarded
):
    """Go's ReverseProxy passes every 1xx but 101 on (Traefik v3 does): a 103
    Early Hints reaches a GET that sent no Expect, but never an HTTP/1.0 client."""
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
    handler, _ = _respond_then_serve(hints + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(request_line + b"\r\nHost: a\r\n\r\n")
        responses = _up_to_final(ResponseReader(sock))
    assert (responses[-1].status, responses[-1].body) == (200, b"final")
    if forwarded:
        assert [r.status for r in responses] == [103, 200]
        assert responses[0].header("link") == "</style.css>; rel=preload; as=style"
    else:
        assert [r.status for r in responses] == [200]


@pytest.mark.parametrize(("hints", "status"), [(5, 200), (6, 502)])
def test_more_than_five_interim_responses_are_a_502(backend, turnout, hints, status):
    """Go's transport takes five 1xx responses before an answer, not more."""
    one = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    handler, _ = _respond_then_serve(
        one * hints + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
    )
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        responses = _up_to_final(ResponseReader(sock))
    assert responses[-1].status == status
    assert len(responses) == min(hints, 5) + 1


# -- bodies that end with the connection ------------------------------------------------


def _close_delimited(body: bytes, pause: float = 0.3):
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Framing: none\r\n\r\n" + body[:10])
        await writer.drain()
        await asyncio.sleep(pause)
        writer.write(body[10:])
        await writer.drain()
        writer.close()

    return handler


def test_close_delimited_body_ends_when_the_backend_closes(backend, turnout):
    body = b"close-delimited body " * 500
    server = backend(raw=_close_delimited(body))
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        started = time.monotonic()
        response = ResponseReader(sock).read(3)
        elapsed = time.monotonic() - started
        # A complete message, re-framed as chunked for an HTTP/1.1 client.
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == body
        # ...and the client connection is still usable.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        again = ResponseReader(sock).read(3)
    assert elapsed < 1.5, elapsed
    assert again.body == body
    assert server.connections == 2


def test_close_delimited_body_to_an_http10_client_ends_with_the_connection(backend, turnout):
    body = b"for an old client " * 300
    server = backend(raw=_close_delimited(body))
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        data = recv_all(sock, 3)
    head, _, got = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert got == body


# -- bodies cut short -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"5\r\nhello\r\n",  # cut between chunks
        b"5\r\nhello\r\nA\r\nhal",  # cut inside a chunk
        b"5\r\nhello\r\n0\r\n",  # cut in the last chunk's line
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n",  # cut in the trailers
    ],
    ids=["between-chunks", "inside-a-chunk", "after-last-chunk-size", "in-trailers"],
)
def test_chunked_body_cut_short_reaches_the_client_cut_short(backend, turnout, sent):
    async def cut(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + sent)
        await writer.drain()
        await asyncio.sleep(0.2)

    server = backend(raw=cut)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock)
        started = time.monotonic()
        closed, more = wait_closed(sock, 3)
        elapsed = time.monotonic() - started
    body = rest + more
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert closed, "the client connection was left open after a cut body"
    assert elapsed < 1.5, elapsed
    assert not body.endswith(b"0\r\n\r\n"), f"the cut body looks complete: {body!r}"
    assert b"hello" in body


def test_invalid_chunk_from_the_backend_cuts_the_client_connection(backend, turnout):
    async def bad_chunk(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"
        )
        await writer.drain()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(1), 3)

    server = backend(raw=bad_chunk)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock)
        closed, more = wait_closed(sock, 3)
    body = rest + more
    assert head.startswith(b"HTTP/1.1 200")
    assert closed
    assert b"world" not in body
    assert not body.endswith(b"0\r\n\r\n")
    assert wait_until(lambda: server.open_connections == 0, 3), "backend connection kept"


def test_content_length_body_cut_short_reaches_the_client_cut_short(backend, turnout):
    async def short(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 20)
        await writer.drain()

    server = backend(raw=short)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock)
        closed, more = wait_closed(sock, 3)
    assert b"content-length: 50" in head.lower()
    assert closed
    assert len(rest + more) == 20


def test_after_a_502_the_pool_serves_good_responses_again(backend, turnout):
    answers = [BAD_HEADS["two-cl-equal"], b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"]

    async def handler(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(answers.pop(0) if len(answers) > 1 else answers[0])
            await writer.drain()

    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).status == 502
    assert [get(proxy.port).body for _ in range(3)] == [b"good"] * 3
    assert server.connections == 2  # the bad one, then one reused three times


# -- heads as they arrive ----------------------------------------------------------------


def test_a_head_in_many_reads_reaches_the_client_line_for_line(backend, turnout):
    """Turnout reads a response head's lines from the bytes themselves
    (upstream.UpstreamConnection._read_head): a head that arrives a few bytes
    at a time, an interim head included, must come out the same."""
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
    final = (
        b"HTTP/1.1 200 OK\r\n"
        b"Server: dripping\r\n"
        b"content-TYPE: text/plain\r\n"
        b"X-Spaced:   kept as sent  \r\n"
        b"Connection: keep-alive, X-Listed\r\n"
        b"X-Listed: hop-by-hop, dropped\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Upgrade: h2c\r\n"
        b"Cache-Control: no-store\r\n"
        b"X-Empty:\r\n"
        b"\r\n"
        b"5\r\ndrips\r\n0\r\n\r\n"
    )

    async def handler(reader, writer):
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        await reader.readuntil(b"\r\n\r\n")
        answer = interim + final
        for start in range(0, len(answer), 3):
            writer.write(answer[start : start + 3])
            await writer.drain()
            await asyncio.sleep(0.002)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")

    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
        )
        raw = b""
        deadline = time.monotonic() + 5
        while not raw.endswith(b"0\r\n\r\n") and time.monotonic() < deadline:
            raw += sock.recv(65536)
    early, _, rest = raw.partition(b"\r\n\r\n")
    assert early == b"HTTP/1.1 100 Continue\r\nX-Interim: 1"
    head, _, body = rest.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    # End-to-end lines as the backend wrote them, in its order; then Turnout's framing.
    assert lines[1:6] == [
        b"Server: dripping",
        b"content-TYPE: text/plain",
        b"X-Spaced:   kept as sent  ",
        b"Cache-Control: no-store",
        b"X-Empty:",
    ]
    assert b"Transfer-Encoding: chunked" in lines[6:]
    for dropped in (b"x-listed", b"upgrade", b"connection: keep-alive"):
        assert dropped not in head.lower(), f"{dropped!r} reached the client: {head!r}"
    # Re-chunked as the pieces came: the same bytes in other chunks.
    decoded, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        decoded, rest = decoded + rest[:size], rest[size + 2 :]
    assert (decoded, rest) == (b"drips", b"\r\n")


@pytest.mark.parametrize("ends", [False, True], ids=["never-ends", "ends"])
def test_a_head_larger_than_64_kib_is_502(backend, turnout, ends):
    """Response heads are bounded (README, "Limits and timeouts"): one that
    grows past 64 KiB is refused without waiting for its end, and one that
    ends past it is refused too."""
    line = b"X-Filler: " + b"f" * 1_000 + b"\r\n"

    async def big_head(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + line * 66)
        if ends:
            writer.write(b"Content-Length: 2\r\n\r\nok")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            # Nor closes: Turnout has to give up by itself.
            await reader.read()

    server = backend(raw=big_head)
    proxy = turnout(dynamic_for(server.url))
    response = get(proxy.port)
    assert response.status == 502
    assert b"X-Filler" not in response.body
    assert wait_until(lambda: server.open_connections == 0, 5), "backend connection kept"


def test_a_head_just_under_64_kib_is_forwarded(backend, turnout):
    line = b"X-Filler: " + b"f" * 1_000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\n" + line * 64 + b"Content-Length: 2\r\n\r\n"
    assert len(head) < 64 * 1024

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"ok")
        await writer.drain()
        await reader.read()

    server = backend(raw=answer)
    proxy = turnout(dynamic_for(server.url))
    response = get(proxy.port)
    assert (response.status, response.body) == (200, b"ok")
    assert len(response.header_all("X-Filler")) == 64


def _first_then_closed_after(second: bytes):
    """Answer a connection's first request; on its second, send ``second`` and
    close; any later request (on a new connection) gets 200 'again'."""
    seen: list[bytes] = []

    async def handler(reader, writer):
        while True:
            try:
                seen.append(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if len(seen) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                await writer.drain()
                continue
            if len(seen) > 2:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")
                await writer.drain()
                continue
            writer.write(second)
            await writer.drain()
            writer.close()
            return

    return handler, seen


def test_a_reused_connection_closed_before_any_answer_is_retried(backend, turnout):
    """A request without a body on a pooled connection that the backend closes
    before any response byte (its keep-alive timeout racing the request) is sent
    again on a new connection, as Go's transport does: the client never sees it."""
    handler, seen = _first_then_closed_after(b"")
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).body == b"first"
    response = get(proxy.port)
    assert (response.status, response.body) == (200, b"again")
    assert len(seen) == 3
    assert server.connections == 2


def test_a_reused_connection_closed_mid_head_is_502_not_a_retry(backend, turnout):
    """Once the backend began to answer, a connection it closes is a 502, not a
    retry, as with Go's transport: it may have acted on the request."""
    handler, seen = _first_then_closed_after(b"HTTP/1.1 200 OK\r\nX-Half")
    server = backend(raw=handler)
    proxy = turnout(dynamic_for(server.url))
    assert get(proxy.port).body == b"first"
    assert get(proxy.port).status == 502
    assert len(seen) == 2, f"the request was sent {len(seen) - 1} times: {seen[1:]}"


def test_pipelined_responses_each_keep_their_own_head(backend, turnout):
    """A response that ends inside its connection's read frees the connection
    only once that read is parsed: a pipelined request dispatched meanwhile must
    not take it and read its head from where the last one left off."""

    def respond(received):
        if received.target == "/first":
            return ok_response(b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n")
        return ok_response(b"second", "X-Second: yes\r\n")

    server = backend(responder=respond)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        reader = ResponseReader(sock)
        first, second = reader.read(), reader.read()
    assert first.body == b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n"
    assert (second.status, second.body, second.header("x-second")) == (200, b"second", "yes")
    assert second.header("x-injected") is None
