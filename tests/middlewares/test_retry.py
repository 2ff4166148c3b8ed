"""retry through a real turnout and a backend that drops connections on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import assert_back_to_baseline
from tests.integration.harness import Backend, Turnout, connect, free_port, get
from tests.integration.harness import request as raw_request
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    read_request,
    service,
)


class Flaky:
    """Closes the first ``drops`` connections once their request arrived, then answers.

    A Content-Length body is read whole first (the backend got everything and
    still answered nothing); ``bodies`` records what answered requests carried,
    ``extra`` the bytes that came after a request (none, unless it was mangled).
    """

    def __init__(self) -> None:
        self.drops = 0
        self.connections = 0
        self.bodies: list[bytes] = []
        self.extra = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        _, body = await read_request(reader)
        if self.drops > 0:
            self.drops -= 1
            writer.transport.abort()  # no response at all: a reset
            return
        self.bodies.append(body)
        with contextlib.suppress(TimeoutError):
            self.extra += len(await asyncio.wait_for(reader.read(65536), 0.05))
        # Connection: close, so that no pooled connection is reused by a later test.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[Flaky, Backend]]:
    state = Flaky()
    backend = Backend(raw=state.handle).start()
    yield state, backend
    backend.stop()


@pytest.fixture(scope="module")
def proxy(flaky: tuple[Flaky, Backend], module_proxy: Callable[..., Turnout]) -> Turnout:
    _, backend = flaky
    down = f"http://127.0.0.1:{free_port()}"
    dynamic = (
        "[http.middlewares.four.retry]\nattempts = 4\n"
        "[http.middlewares.one.retry]\nattempts = 1\n"
        '[http.middlewares.slow.retry]\nattempts = 3\ninitialInterval = "200ms"\n'
        '[http.middlewares.fast.retry]\nattempts = 3\ninitialInterval = "0s"\n'
        + host_router("four", ["four"])
        + host_router("one", ["one"])
        + host_router("plain", [])
        + "[http.middlewares.hold.buffering]\nmemRequestBodyBytes = 100\n"
        + host_router("held", ["four", "hold"])
        + '[http.routers.deflt]\nrule = "Host(`deflt.test`)"\nservice = "down"\n'
        'middlewares = ["four"]\n'
        + '[http.routers.half]\nrule = "Host(`half.test`)"\nservice = "half"\n'
        'middlewares = ["four"]\n'
        + service(down, "half")
        + f'[[http.services.half.loadBalancer.servers]]\nurl = "{backend.url}"\n'
        + '[http.routers.slow]\nrule = "Host(`slow.test`)"\nservice = "down"\n'
        'middlewares = ["slow"]\n'
        + '[http.routers.fast]\nrule = "Host(`fast.test`)"\nservice = "down"\n'
        'middlewares = ["fast"]\n' + service(backend.url) + service(down, "down")
    )
    proxy = module_proxy(dynamic)
    BASELINE[proxy.port] = proxy.stats()
    return proxy


BASELINE: dict[int, dict[str, object]] = {}


def test_retry_until_the_backend_answers(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 2
    before = state.connections
    response = get(proxy.port, "/", host="four.test")
    assert response.status == 200
    assert response.body == b"ok"
    assert state.connections - before == 3  # two dropped, the third answered


def test_attempts_exhausted_is_502(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 10
    before = state.connections
    response = get(proxy.port, "/", host="four.test")
    assert response.status == 502
    assert state.connections - before == 4  # attempts counts every try
    state.drops = 0


def test_one_attempt_means_no_retry(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 1
    before = state.connections
    assert get(proxy.port, "/", host="one.test").status == 502
    assert state.connections - before == 1
    # Without the middleware, no retry either.
    state.drops = 1
    before = state.connections
    assert get(proxy.port, "/", host="plain.test").status == 502
    assert state.connections - before == 1
    state.drops = 0


def test_a_post_that_reached_the_backend_is_not_sent_twice(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 1
    before = state.connections
    response = raw_request(
        proxy.port,
        b"POST / HTTP/1.1\r\nHost: four.test\r\nContent-Length: 5\r\n\r\nhello",
    )
    assert response.status == 502
    assert state.connections - before == 1
    state.drops = 0
    # The next one goes through (the budget of an exchange is its own).
    assert get(proxy.port, "/", host="four.test").status == 200


def test_an_idempotent_request_body_is_sent_again(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 2
    before = state.connections
    body = bytes(range(256)) * 1000  # 256 kB: more than arrives in one read
    response = raw_request(
        proxy.port,
        b"PUT /doc HTTP/1.1\r\nHost: four.test\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert response.status == 200
    assert state.connections - before == 3
    assert state.bodies[-1] == body  # the third try carried the whole body again
    # Chunked too: the framing is replayed as it was sent.
    state.drops = 1
    response = raw_request(
        proxy.port,
        b"PUT /doc HTTP/1.1\r\nHost: four.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert response.status == 200
    assert state.bodies[-1] == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def test_a_body_a_buffering_spooled_is_sent_again_once(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    # retry outside buffering: the body is in buffering's temporary file, and the
    # next try sends it from there (not the retry's copy as well).
    state, _ = flaky
    state.drops = 1
    body = b"0123456789" * 100
    response = raw_request(
        proxy.port,
        b"PUT /doc HTTP/1.1\r\nHost: held.test\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert response.status == 200
    assert state.bodies[-1] == body
    assert state.extra == 0  # and nothing after it


def test_a_post_is_retried_when_the_backend_was_not_reached(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    # Service "half": an unreachable server first, then the real one (round robin).
    state, _ = flaky
    before = state.connections
    response = raw_request(
        proxy.port,
        b"POST /form HTTP/1.1\r\nHost: half.test\r\nContent-Length: 11\r\n\r\nhello world",
    )
    assert response.status == 200
    assert state.connections - before == 1
    assert state.bodies[-1] == b"hello world"


def test_a_body_past_the_replay_buffer_is_not_retried(proxy, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    state.drops = 1
    before = state.connections
    body = b"x" * (2 * 1024 * 1024 + 1)  # one byte past Traefik's 2 MiB
    response = raw_request(
        proxy.port,
        b"PUT /big HTTP/1.1\r\nHost: four.test\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        timeout=15,
    )
    assert response.status == 502
    assert state.connections - before == 1
    state.drops = 0


def test_backoff_timing(proxy) -> None:  # type: ignore[no-untyped-def]
    # attempts 3, initialInterval 200ms: two waits, the first in [100, 300] ms and
    # the second in [141, 424] ms (interval x 2 ** (1/2), randomization 0.5).
    started = time.monotonic()
    assert get(proxy.port, "/", host="slow.test").status == 502
    slow = time.monotonic() - started
    assert 0.24 <= slow < 1.2, slow
    started = time.monotonic()
    assert get(proxy.port, "/", host="fast.test").status == 502
    fast = time.monotonic() - started
    assert fast < 0.2, fast  # initialInterval 0: tries follow each other at once
    # No initialInterval: Traefik v3 has no default, so four tries at once too
    # (a 100 ms default would wait three times, 0.3 s on average).
    started = time.monotonic()
    assert get(proxy.port, "/", host="deflt.test").status == 502
    unset = time.monotonic() - started
    assert unset < 0.15, unset


def test_client_gone_during_the_backoff(proxy) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        with connect(proxy.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n")
            time.sleep(0.05)
    time.sleep(1.0)  # past every pending wait
    assert get(proxy.port, "/", host="four.test").status == 200
    assert_back_to_baseline(proxy, BASELINE[proxy.port])


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        "[http.middlewares.zero.retry]\nattempts = 0\n"
        '[http.middlewares.neg.retry]\nattempts = 2\ninitialInterval = "-1s"\n',
    )
    assert code != 0
    assert "http.middlewares.zero.retry.attempts" in output
    assert "http.middlewares.neg.retry.initialInterval" in output
