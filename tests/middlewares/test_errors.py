"""errors through a real turnout, a real backend and a real error-page server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import assert_back_to_baseline
from tests.integration.harness import (
    Backend,
    Received,
    ResponseReader,
    Turnout,
    connect,
    free_port,
    get,
)
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    service,
)


def app_answer(received: Received) -> bytes:
    path = received.target.partition("?")[0]
    if path == "/big":
        body = b"x" * 200_000
        return (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\nX-App: 1\r\n\r\n".encode()
            + body
        )
    status = int(path.strip("/") or "200")
    body = b"app body"
    return (
        f"HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nX-App: 1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def page_answer(received: Received) -> bytes:
    if received.target == "/slow":
        await asyncio.sleep(0.5)
    body = f"page {received.target}".encode()
    return (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nX-Page: 1\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Backend, Backend]]:
    app = Backend(responder=app_answer).start()
    pages = Backend(responder=page_answer).start()
    yield app, pages
    app.stop()
    pages.stop()


@pytest.fixture(scope="module")
def proxy(servers: tuple[Backend, Backend], module_proxy: Callable[..., Turnout]) -> Turnout:
    app, pages = servers
    dynamic = (
        "[http.middlewares.err.errors]\n"
        'status = ["500-599", "404"]\nservice = "pages"\nquery = "/{status}.html?from={url}"\n'
        "[http.middlewares.rw.errors]\n"
        'status = ["418", "500-599"]\nservice = "pages@file"\nquery = "{status}-{originalStatus}"\n'
        '[http.middlewares.rw.errors.statusRewrites]\n"418" = 404\n"502-504" = 500\n'
        "[http.middlewares.down.errors]\n"
        'status = ["500"]\nservice = "dead"\nquery = "/x"\n'
        '[http.middlewares.slowpage.errors]\nstatus = ["500"]\nservice = "pages"\nquery = "/slow"\n'
        "[http.middlewares.tries.retry]\nattempts = 2\n"
        '[http.middlewares.deny.errors]\nstatus = ["403"]\nservice = "pages"\nquery = "/denied"\n'
        '[http.middlewares.block.ipAllowList]\nsourceRange = ["10.0.0.0/8"]\n'
        '[http.middlewares.seen.headers.customResponseHeaders]\nX-Seen = "yes"\n'
        + host_router("inner", ["deny", "block"])
        + host_router("outer", ["block", "deny"])
        + '[http.routers.noserver]\nrule = "Host(`noserver.test`)"\nservice = "empty"\n'
        + 'middlewares = ["seen", "err"]\n'
        + "[http.services.empty.loadBalancer]\nservers = []\n"
        + "[http.middlewares.own.errors]\n"
        'status = ["500"]\nservice = "pagesown"\nerrorRequestHeaders = ["x-keep"]\n'
        + host_router("err", ["err"])
        + host_router("rw", ["rw"])
        + host_router("down", ["down"])
        + host_router("own", ["own"])
        + host_router("slowpage", ["slowpage"])
        + '[http.routers.both]\nrule = "Host(`both.test`)"\nservice = "dead"\n'
        + 'middlewares = ["err", "tries"]\n'
        + '[http.routers.deadapp]\nrule = "Host(`deadapp.test`)"\nservice = "dead"\n'
        + 'middlewares = ["err"]\n'
        + service(app.url)
        + service(pages.url, "pages")
        + service(f"http://127.0.0.1:{free_port()}", "dead")
        + service(pages.url, "pagesown")
    )
    dynamic = dynamic.replace(
        "[http.services.pagesown.loadBalancer]\n",
        "[http.services.pagesown.loadBalancer]\npassHostHeader = false\n",
    )
    proxy = module_proxy(dynamic)
    BASELINE[proxy.port] = proxy.stats()
    return proxy


BASELINE: dict[int, dict[str, object]] = {}


def test_matching_status_gets_the_page(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    response = get(proxy.port, "/500?a=1&b=2", host="err.test", headers="X-Client: c\r\n")
    assert response.status == 500  # the original status, not the page's 404
    assert response.body == b"page /500.html?from=%2F500%3Fa%3D1%26b%3D2"
    assert response.header("Content-Type") == "text/html"
    assert response.header("X-Page") == "1"
    assert response.header("X-App") is None
    asked = pages.requests[-1]
    assert asked.method == "GET"
    assert asked.header("X-Client") == "c"  # the client's headers go along
    assert asked.header("Host") == "err.test"  # and its Host (passHostHeader)
    assert get(proxy.port, "/404", host="err.test").status == 404
    assert pages.requests[-1].target.startswith("/404.html")


def test_other_statuses_pass(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    before = len(pages.requests)
    for path, status in (("/200", 200), ("/403", 403), ("/418", 418)):
        response = get(proxy.port, path, host="err.test")
        assert response.status == status
        assert response.body == b"app body"
        assert response.header("X-App") == "1"
    assert len(pages.requests) == before


def test_status_rewrites(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    response = get(proxy.port, "/418", host="rw.test")
    assert response.status == 404
    assert pages.requests[-1].target == "/404-418"
    response = get(proxy.port, "/503", host="rw.test")
    assert response.status == 500
    assert response.body == b"page /500-503"
    response = get(proxy.port, "/501", host="rw.test")  # matched, not rewritten
    assert response.status == 501
    assert response.body == b"page /501-501"


def test_pass_host_header_false(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    response = get(proxy.port, "/500", host="own.test")
    assert response.status == 500
    assert pages.requests[-1].target == "/"  # no query: the root
    assert pages.requests[-1].header("Host") == f"127.0.0.1:{pages.port}"
    # errorRequestHeaders: only the listed request headers reach the page service.
    get(proxy.port, "/500", host="own.test", headers="X-Keep: 1\r\nCookie: secret=1\r\n")
    assert pages.requests[-1].header("X-Keep") == "1"
    assert pages.requests[-1].header("Cookie") is None


def test_unreachable_error_service(proxy) -> None:  # type: ignore[no-untyped-def]
    response = get(proxy.port, "/500", host="down.test")
    assert response.status == 500
    assert response.body == b"Bad Gateway"


def test_backend_failure_gets_the_page(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    response = get(proxy.port, "/x", host="deadapp.test")
    assert response.status == 502
    assert response.body == b"page /502.html?from=%2Fx"
    assert pages.requests[-1].target == "/502.html?from=%2Fx"


def test_retry_inside_errors_then_the_page(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    # The retry (inner) tries first; once it gives up, errors answers with its page.
    response = get(proxy.port, "/r", host="both.test")
    assert response.status == 502
    assert response.body == b"page /502.html?from=%2Fr"


def test_answers_of_middlewares_after_it_are_caught(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    # Traefik's errors wraps the rest of the chain: ipAllowList's 403 below it is caught...
    response = get(proxy.port, "/200", host="inner.test")
    assert response.status == 403
    assert response.body == b"page /denied"
    assert response.header("X-Page") == "1"
    # ...but not when ipAllowList is outside it.
    response = get(proxy.port, "/200", host="outer.test")
    assert response.status == 403
    assert response.body == b"Forbidden"


def test_a_service_without_servers_gets_the_page(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, pages = servers
    response = get(proxy.port, "/nothing", host="noserver.test")
    assert response.status == 503
    assert response.body == b"page /503.html?from=%2Fnothing"
    assert pages.requests[-1].target == "/503.html?from=%2Fnothing"
    # The headers middleware outside errors sees that answer too, as in Traefik.
    assert response.header("X-Seen") == "yes"


def test_client_gone_while_the_page_is_fetched(proxy) -> None:  # type: ignore[no-untyped-def]
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /500 HTTP/1.1\r\nHost: slowpage.test\r\n\r\n")
        time.sleep(0.1)
    time.sleep(0.6)  # the page arrives for nobody
    assert get(proxy.port, "/500", host="slowpage.test").body == b"page /slow"
    assert_back_to_baseline(proxy, BASELINE[proxy.port])


def test_keep_alive_and_a_dropped_large_body(proxy) -> None:  # type: ignore[no-untyped-def]
    with connect(proxy.port) as sock:
        sock.sendall(
            b"GET /big HTTP/1.1\r\nHost: err.test\r\n\r\n"
            b"GET /200 HTTP/1.1\r\nHost: err.test\r\n\r\n"
            b"GET /502 HTTP/1.1\r\nHost: err.test\r\n\r\n"
        )
        reader = ResponseReader(sock)
        first = reader.read()
        assert first.status == 503
        assert first.body == b"page /503.html?from=%2Fbig"
        second = reader.read()
        assert (second.status, second.body) == (200, b"app body")
        third = reader.read()
        assert third.status == 502
        assert third.body.startswith(b"page /502.html")


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        '[http.middlewares.nosvc.errors]\nstatus = ["500"]\n'
        '[http.middlewares.unknown.errors]\nstatus = ["500"]\nservice = "nope"\n'
        '[http.middlewares.range.errors]\nstatus = ["5xx"]\nservice = "pages"\n'
        '[http.middlewares.rewrite.errors]\nstatus = ["500"]\nservice = "pages"\n'
        '[http.middlewares.rewrite.errors.statusRewrites]\n"50-x" = 500\n'
        '[http.middlewares.headers.errors]\nstatus = ["500"]\nservice = "pages"\n'
        'errorRequestHeaders = ["bad header"]\n' + service("http://127.0.0.1:1", "pages"),
    )
    assert code != 0
    assert "http.middlewares.nosvc.errors.service" in output
    assert "http.middlewares.unknown.errors.service" in output
    assert "nope@file" in output
    assert "http.middlewares.range.errors.status" in output
    assert "http.middlewares.rewrite.errors.statusRewrites.50-x" in output
    assert "http.middlewares.headers.errors.errorRequestHeaders[0]" in output
