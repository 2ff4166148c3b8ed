"""retry through a real turnout and a backend that drops connections on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import time
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
    free_port,
    get,
    ok_response,
)
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
        head, body = await read_request(reader)
        if head.startswith(b"GET /cut "):
            # A 503 that announces 100 bytes and dies after 10.
            writer.write(b"HTTP/1.1 503 Nope\r\nContent-Length: 100\r\n\r\n0123456789")
            await writer.drain()
            writer.transport.abort()
            return
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


SEEN: dict[str, int] = {}  # tries per target, for the status backend


def by_status(received: Received) -> bytes:
    """``/fail-N-STATUS/...``: STATUS to the first N tries of that target, then 200."""
    seen = SEEN[received.target] = SEEN.get(received.target, 0) + 1
    _, count, code = received.target.split("/")[1].split("-")
    if count == "always" or seen <= int(count):
        body = b"failed %d" % seen
        head = f"HTTP/1.1 {code} Nope\r\nContent-Length: {len(body)}\r\nX-Try: {seen}\r\n\r\n"
        return head.encode() + body
    return ok_response(b"ok " + received.body, f"X-Try: {seen}\r\n")


@pytest.fixture(scope="module")
def statuses() -> Iterator[Backend]:
    backend = Backend(responder=by_status).start()
    yield backend
    backend.stop()


STATUS_MIDDLEWARES = """
[http.middlewares.st.retry]
attempts = 3
status = ["500-599"]
[http.middlewares.stpost.retry]
attempts = 3
status = ["503"]
retryNonIdempotentMethod = true
[http.middlewares.statusonly.retry]
attempts = 3
status = ["502"]
disableRetryOnNetworkError = true
[http.middlewares.nonet.retry]
attempts = 3
status = ["503"]
disableRetryOnNetworkError = true
[http.middlewares.timed.retry]
attempts = 5
status = ["503"]
initialInterval = "150ms"
timeout = "200ms"
[http.middlewares.untimed.retry]
attempts = 5
status = ["503"]
[http.middlewares.small.retry]
attempts = 3
status = ["503"]
maxRequestBodyBytes = 10
[http.middlewares.forbidden.retry]
attempts = 3
status = ["403"]
[http.middlewares.tens.ipAllowList]
sourceRange = ["10.0.0.0/8"]
"""


def routed_to(name: str, middleware: str, service_name: str) -> str:
    return (
        f'[http.routers.{name}]\nrule = "Host(`{name}.test`)"\nservice = "{service_name}"\n'
        f'middlewares = ["{middleware}"]\n'
    )


def two_servers(name: str, first: str, second: str) -> str:
    """A service whose first request goes to ``first``, the next to ``second``."""
    return (
        service(first, name) + f'[[http.services.{name}.loadBalancer.servers]]\nurl = "{second}"\n'
    )


@pytest.fixture(scope="module")
def proxy(
    flaky: tuple[Flaky, Backend], statuses: Backend, module_proxy: Callable[..., Turnout]
) -> Turnout:
    _, backend = flaky
    down = f"http://127.0.0.1:{free_port()}"
    dynamic = (
        STATUS_MIDDLEWARES
        + "".join(
            routed_to(name, name, "statuses")
            for name in ("st", "stpost", "timed", "untimed", "small")
        )
        + service(statuses.url, "statuses")
        + routed_to("statusonly", "statusonly", "downfirst")
        + two_servers("downfirst", down, statuses.url)
        + routed_to("nonet", "nonet", "downthen")
        + two_servers("downthen", down, statuses.url)
        + routed_to("nonetdrop", "nonet", "app")
        + routed_to("cut", "st", "app")
        + '[http.routers.guarded]\nrule = "Host(`guarded.test`)"\nservice = "statuses"\n'
        'middlewares = ["forbidden", "tens"]\n' + "[http.middlewares.four.retry]\nattempts = 4\n"
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


def tries(response: Response) -> int:
    return int(response.header("X-Try") or 0)


def test_a_status_in_the_list_is_tried_again(proxy: Turnout) -> None:
    response = get(proxy.port, "/fail-2-503/a", host="st.test")
    # Two 503s read and dropped: the client sees only the third try's answer.
    assert (response.status, response.body, tries(response)) == (200, b"ok ", 3)
    exhausted = get(proxy.port, "/fail-always-500/b", host="st.test")
    assert (exhausted.status, exhausted.body, tries(exhausted)) == (500, b"failed 3", 3)
    other = get(proxy.port, "/fail-1-418/c", host="st.test")  # not in the list
    assert (other.status, tries(other)) == (418, 1)


def post(port: int, host: str, target: str, body: bytes, method: str = "POST") -> Response:
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
    return raw_request(port, head.encode() + body)


def test_a_post_is_retried_on_a_status_only_when_allowed(proxy: Turnout, statuses: Backend) -> None:
    response = post(proxy.port, "st.test", "/fail-1-503/post", b"payload")
    assert (response.status, tries(response)) == (503, 1)  # POST: not idempotent
    response = post(proxy.port, "st.test", "/fail-1-503/patch", b"payload", "PATCH")
    assert (response.status, tries(response)) == (503, 1)
    before = len(statuses.requests)
    response = post(proxy.port, "stpost.test", "/fail-1-503/allowed", b"payload")
    assert (response.status, response.body, tries(response)) == (200, b"ok payload", 2)
    assert [r.body for r in statuses.requests[before:]] == [b"payload", b"payload"]


def test_turnouts_own_502_is_retried_on_status(proxy: Turnout) -> None:
    # Network errors not retried, but 502 listed: the unreachable first server's
    # 502 is a status like any other, and the second server answers.
    response = get(proxy.port, "/fail-0-200/x", host="statusonly.test")
    assert (response.status, tries(response)) == (200, 1)


def test_without_network_retries_a_failure_is_the_answer(proxy: Turnout, flaky) -> None:  # type: ignore[no-untyped-def]
    assert get(proxy.port, "/fail-0-200/y", host="nonet.test").status == 502  # unreachable
    state, _ = flaky
    state.drops = 1
    before = state.connections
    assert get(proxy.port, "/", host="nonetdrop.test").status == 502  # dropped
    assert state.connections - before == 1
    state.drops = 0


def test_no_more_tries_once_the_timeout_passed(proxy: Turnout) -> None:
    untimed = get(proxy.port, "/fail-always-503/untimed", host="untimed.test")
    assert (untimed.status, tries(untimed)) == (503, 5)
    # 150 ms waits (randomized by half) and a 200 ms timeout: two to four tries.
    timed = get(proxy.port, "/fail-always-503/timed", host="timed.test")
    assert timed.status == 503
    assert 2 <= tries(timed) <= 4, tries(timed)


def test_max_request_body_bytes_bounds_the_body_sent_again(proxy: Turnout) -> None:
    fits = post(proxy.port, "small.test", "/fail-1-503/fits", b"0123456789", "PUT")
    assert (fits.status, fits.body, tries(fits)) == (200, b"ok 0123456789", 2)
    over = post(proxy.port, "small.test", "/fail-1-503/over", b"0123456789!", "PUT")
    assert (over.status, tries(over)) == (503, 1)  # 11 bytes: not kept, not retried


def test_a_middleware_refusal_inside_is_never_sent_to_the_service(
    proxy: Turnout, statuses: Backend
) -> None:
    # 403 is in the list, but it is ipAllowList's (the client is 127.0.0.1): another
    # try would go to the service past the allow list. It is the client's answer.
    before = len(statuses.requests)
    assert get(proxy.port, "/fail-0-200/z", host="guarded.test").status == 403
    assert len(statuses.requests) == before


def test_a_dropped_answer_cut_short_is_a_500(proxy: Turnout, flaky) -> None:  # type: ignore[no-untyped-def]
    state, _ = flaky
    before = state.connections
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /cut HTTP/1.1\r\nHost: cut.test\r\n\r\n")
        response = ResponseReader(sock).read()
        # The 503 was being read to be dropped when its backend died: nothing had
        # been sent, so the client gets a whole 500, as Traefik's recovery writes it.
        assert (response.status, response.body) == (500, b"Internal Server Error\n")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: four.test\r\n\r\n")  # still usable
        assert ResponseReader(sock).read().status == 200
    assert state.connections - before == 2  # the cut try, then the next request


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


def test_bad_v37_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        "[http.middlewares.nothing.retry]\nattempts = 2\ndisableRetryOnNetworkError = true\n"
        '[http.middlewares.code.retry]\nattempts = 2\nstatus = ["500", "5xx"]\n'
        "[http.middlewares.body.retry]\nattempts = 2\nmaxRequestBodyBytes = -2\n"
        '[http.middlewares.late.retry]\nattempts = 2\ntimeout = "-1s"\n',
    )
    assert code != 0
    assert "http.middlewares.nothing.retry.status: needs status" in output
    assert "http.middlewares.code.retry.status[1]: invalid status code or range '5xx'" in output
    assert "http.middlewares.body.retry.maxRequestBodyBytes" in output
    assert "http.middlewares.late.retry.timeout: must not be negative" in output
