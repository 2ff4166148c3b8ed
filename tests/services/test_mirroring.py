"""mirroring services through a real Turnout: copies reach the mirrors, answers stay the main's."""

from __future__ import annotations

import asyncio
import time

from tests.integration.harness import ResponseReader, connect, get, request, wait_until
from tests.middlewares.support import check
from tests.services.support import balancer, named, router


def mirroring(main: str, mirrors: dict[str, int], extra: str = "") -> str:
    text = f'[http.services.shadow.mirroring]\nservice = "{main}"\n{extra}'
    for name, percent in mirrors.items():
        text += (
            f'[[http.services.shadow.mirroring.mirrors]]\nname = "{name}"\npercent = {percent}\n'
        )
    return text


def setup(backend, turnout, percent: int = 100, extra: str = "", mirror_responder=None):
    main = backend(responder=named("main"))
    copy = backend(responder=mirror_responder or named("mirror"))
    proxy = turnout(
        router("shadow")
        + mirroring("live", {"dark": percent}, extra)
        + balancer("live", main.url)
        + balancer("dark", copy.url)
    )
    return main, copy, proxy


def post(port: int, body: bytes, path: str = "/upload") -> bytes:
    response = request(
        port,
        b"POST %b HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n%b"
        % (path.encode(), len(body), body),
    )
    assert response.status == 200
    return response.body


def test_percent_of_requests_are_copied_and_answers_are_the_mains(backend, turnout):
    main, copy, proxy = setup(backend, turnout, percent=30)
    answers = [get(proxy.port, f"/r{index}").body for index in range(20)]
    assert answers == [b"main"] * 20
    assert wait_until(lambda: len(copy.requests) == 6, 3), len(copy.requests)
    time.sleep(0.2)
    assert len(copy.requests) == 6  # exactly 30 % of 20
    assert len(main.requests) == 20
    # A copy is the request as the main server got it.
    copied = {r.target: r for r in copy.requests}
    for original in main.requests:
        if original.target in copied:
            twin = copied[original.target]
            assert twin.method == original.method
            assert twin.header("Host") == original.header("Host")
            assert twin.header("X-Forwarded-For") == original.header("X-Forwarded-For")


def test_bodies_are_copied_whole(backend, turnout):
    main, copy, proxy = setup(backend, turnout)
    body = b"x" * 100_000 + b"end"
    assert post(proxy.port, body) == b"main"
    assert wait_until(lambda: len(copy.requests) == 1, 3)
    assert copy.requests[0].body == body == main.requests[0].body


def test_chunked_bodies_are_copied(backend, turnout):
    main, copy, proxy = setup(backend, turnout)
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        time.sleep(0.2)  # the body arrives after the request was forwarded
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
        assert ResponseReader(sock).read().body == b"main"
    assert wait_until(lambda: len(copy.requests) == 1, 3)
    assert copy.requests[0].body == b"hello world" == main.requests[0].body


def test_mirror_body_false_sends_copies_without_body(backend, turnout):
    main, copy, proxy = setup(backend, turnout, extra="mirrorBody = false\n")
    assert post(proxy.port, b"secret payload") == b"main"
    assert wait_until(lambda: len(copy.requests) == 1, 3)
    assert copy.requests[0].body == b""
    assert copy.requests[0].header("Content-Length") == "0"
    assert main.requests[0].body == b"secret payload"


def test_bodies_over_max_body_size_are_not_mirrored(backend, turnout):
    main, copy, proxy = setup(backend, turnout, extra="maxBodySize = 10\n")
    assert post(proxy.port, b"0123456789abcdef") == b"main"
    assert post(proxy.port, b"short") == b"main"
    assert wait_until(lambda: len(copy.requests) == 1, 3)
    time.sleep(0.2)
    assert [r.body for r in copy.requests] == [b"short"]
    assert [r.body for r in main.requests] == [b"0123456789abcdef", b"short"]


def test_a_slow_mirror_never_slows_the_main_response(backend, turnout):
    async def slow(received):
        await asyncio.sleep(3)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"

    _, copy, proxy = setup(backend, turnout, mirror_responder=slow)
    started = time.monotonic()
    answers = [get(proxy.port).body for _ in range(5)]
    elapsed = time.monotonic() - started
    assert answers == [b"main"] * 5
    assert elapsed < 2.5, elapsed  # each copy takes 3 s to be answered
    assert wait_until(lambda: len(copy.requests) == 5, 3)
    # The copies finish on their own; the leak check of the fixture waits for them.
    assert wait_until(lambda: copy.open_connections == 0, 8)


def test_refusals(tmp_path):
    config = (
        mirroring(
            "live", {"dark": 101, "nowhere": 5}, "[http.services.shadow.mirroring.healthCheck]\n"
        )
        + balancer("live", "http://127.0.0.1:9")
        + balancer("dark", "http://127.0.0.1:9")
    )
    code, output = check(tmp_path, config)
    assert code == 1
    for line in (
        "http.services.shadow.mirroring.service: service 'live' has no healthCheck, "
        "so it cannot report its health to 'shadow@file'",
        "http.services.shadow.mirroring.mirrors[0].percent: must be 0 to 100, got 101",
        "http.services.shadow.mirroring.mirrors[1].name: unknown service 'nowhere'",
    ):
        assert f"dynamic.toml: {line}" in output, output


def test_a_mirror_named_localhost_gets_every_copy(backend, turnout):
    """``localhost`` is ::1 and 127.0.0.1; a mirror on 127.0.0.1 only still gets them all."""
    main = backend(responder=named("main"))
    copy = backend(responder=named("mirror"))
    proxy = turnout(
        router("shadow")
        + mirroring("live", {"dark": 100}, "")
        + balancer("live", main.url)
        + balancer("dark", f"http://localhost:{copy.port}")
    )
    assert [get(proxy.port, f"/r{index}").body for index in range(6)] == [b"main"] * 6
    assert wait_until(lambda: len(copy.requests) == 6, 3), len(copy.requests)
