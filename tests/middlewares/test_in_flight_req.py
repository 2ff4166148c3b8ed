"""inFlightReq through a real turnout: slots per source, 429 past the limit, no leaks."""

from __future__ import annotations

import asyncio
import threading
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
    wait_until,
)
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    service,
)

GATE = threading.Event()  # /hold requests are answered once it is set


async def respond(received: Received) -> bytes:
    if "/hold" in received.target:
        while not GATE.is_set():
            await asyncio.sleep(0.01)
    return ok_response()


@pytest.fixture(scope="module")
def held_backend() -> Iterator[Backend]:
    server = Backend(responder=respond).start()
    yield server
    GATE.set()
    server.stop()


MIDDLEWARES = """
[http.middlewares.two.inFlightReq]
amount = 2
[http.middlewares.one.inFlightReq]
amount = 1
[http.middlewares.tenant.inFlightReq]
amount = 1
[http.middlewares.tenant.inFlightReq.sourceCriterion]
requestHeaderName = "X-Tenant"
[http.middlewares.none.inFlightReq]
amount = 0
"""


@pytest.fixture(scope="module")
def proxy(held_backend: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    routers = [host_router(n, [n]) for n in ("two", "tenant", "none")]
    routers.append(host_router("one", ["one"], "PathPrefix(`/by-host`)"))
    routers.append(host_router("one2", ["one"], "PathPrefix(`/other-router`)"))
    return module_proxy(MIDDLEWARES + "".join(routers) + service(held_backend.url))


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    GATE.clear()
    yield
    GATE.set()


def hold(port: int, host: str, path: str = "/hold", headers: str = ""):  # type: ignore[no-untyped-def]
    sock = connect(port)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    return sock


def test_past_amount_is_429_until_a_slot_frees(proxy: Turnout, held_backend: Backend) -> None:
    before = len(held_backend.requests)
    held = [hold(proxy.port, "two.test") for _ in range(2)]
    assert wait_until(lambda: len(held_backend.requests) >= before + 2)
    refused = get(proxy.port, "/hold", host="two.test")
    assert refused.status == 429
    assert refused.body == b"Too Many Requests"
    GATE.set()
    for sock in held:
        assert ResponseReader(sock).read().status == 200
        sock.close()
    GATE.clear()
    # Both slots are free again: two more may be held, the third is refused.
    held = [hold(proxy.port, "two.test") for _ in range(2)]
    assert wait_until(lambda: get(proxy.port, "/", host="two.test").status == 429)
    GATE.set()
    for sock in held:
        assert ResponseReader(sock).read().status == 200
        sock.close()


def test_a_vanished_client_frees_its_slot(proxy: Turnout) -> None:
    for _ in range(3):
        sock = hold(proxy.port, "a.example", "/by-host/hold")
        assert wait_until(lambda: get(proxy.port, "/by-host", host="a.example").status == 429)
        sock.close()  # never read: the client is gone
        assert wait_until(lambda: get(proxy.port, "/by-host", host="a.example").status == 200)


def test_default_source_is_the_host(proxy: Turnout) -> None:
    sock = hold(proxy.port, "a.example", "/by-host/hold")
    try:
        assert wait_until(lambda: get(proxy.port, "/by-host", host="a.example").status == 429)
        assert get(proxy.port, "/by-host", host="b.example").status == 200
        # req.Host keeps the port.
        assert get(proxy.port, "/by-host", host="a.example:80").status == 200
        # Another router with the same middleware counts on its own, as in Traefik.
        assert get(proxy.port, "/other-router", host="a.example").status == 200
    finally:
        sock.close()


def test_request_header_source(proxy: Turnout) -> None:
    sock = hold(proxy.port, "tenant.test", headers="X-Tenant: a\r\n")
    try:
        refused = lambda: get(proxy.port, host="tenant.test", headers="X-Tenant: a\r\n")  # noqa: E731
        assert wait_until(lambda: refused().status == 429)
        assert get(proxy.port, host="tenant.test", headers="X-Tenant: b\r\n").status == 200
    finally:
        sock.close()


def test_amount_zero_refuses_everything_as_traefik(proxy: Turnout) -> None:
    assert get(proxy.port, host="none.test").status == 429


def test_bad_amount_names_its_key(tmp_path: Path) -> None:
    code, output = check(tmp_path, "[http.middlewares.bad.inFlightReq]\namount = -1\n")
    assert code != 0
    assert "http.middlewares.bad.inFlightReq.amount: amount must not be negative" in output
