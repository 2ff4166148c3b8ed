"""forwardAuth through a real turnout and a real auth server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    Backend,
    Received,
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
    service,
)


def auth_answer(received: Received) -> bytes:
    verdict = received.header("X-Test") or "allow"
    if verdict == "allow":
        return (
            b"HTTP/1.1 200 OK\r\nX-Auth-User: alice\r\nX-Auth-Role: admin\r\n"
            b"X-Auth-Extra: 1\r\nX-Other: no\r\n"
            b"Set-Cookie: session=fromauth; Path=/\r\nSet-Cookie: tracking=1\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
    if verdict == "redirect":
        return b"HTTP/1.1 302 Found\r\nLocation: /login?next=1\r\nContent-Length: 0\r\n\r\n"
    if verdict == "slow":
        return b""  # handled below
    return (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 6\r\n\r\ndenied"
    )


async def auth_responder(received: Received) -> bytes:
    if received.header("X-Test") == "slow":
        await asyncio.sleep(0.3)
        return auth_answer(Received("GET", "/", [], b"", "1.1"))
    return auth_answer(received)


def app_answer(received: Received) -> bytes:
    return ok_response(extra="Set-Cookie: session=fromapp\r\nSet-Cookie: keep=1\r\n")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Backend, Backend]]:
    auth = Backend(responder=auth_responder).start()
    app = Backend(responder=app_answer).start()
    yield auth, app
    auth.stop()
    app.stop()


def middlewares(auth_url: str) -> str:
    return f"""
[http.middlewares.plain.forwardAuth]
address = "{auth_url}/verify?x=1"
authResponseHeaders = ["X-Auth-User", "x-auth-role"]
addAuthCookiesToResponse = ["session"]
[http.middlewares.regex.forwardAuth]
address = "{auth_url}/verify"
authResponseHeadersRegex = "^X-Auth-"
authRequestHeaders = ["X-Test", "Cookie"]
trustForwardHeader = true
preserveRequestMethod = true
[http.middlewares.keep.forwardAuth]
address = "{auth_url}/verify"
preserveLocationHeader = true
[http.middlewares.down.forwardAuth]
address = "http://127.0.0.1:{free_port()}/"
"""


@pytest.fixture(scope="module")
def proxy(servers: tuple[Backend, Backend], module_proxy: Callable[..., Turnout]) -> Turnout:
    auth, app = servers
    routers = "".join(host_router(n, [n]) for n in ("plain", "regex", "keep", "down"))
    return module_proxy(
        middlewares(auth.url) + routers + service(app.url),
        entrypoint_extra="forwardedHeaders.insecure = true",
    )


def test_allowed_request_gets_the_auth_headers(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, app = servers
    response = get(
        proxy.port,
        "/page?q=2",
        host="plain.test",
        headers="X-Auth-User: mallory\r\nX-Auth-Extra: client\r\nCookie: c=1\r\n",
    )
    assert response.status == 200
    asked = auth.requests[-1]
    assert asked.method == "GET"
    assert asked.target == "/verify?x=1"
    assert asked.header("X-Forwarded-Method") == "GET"
    assert asked.header("X-Forwarded-Uri") == "/page?q=2"
    assert asked.header("X-Forwarded-Host") == "plain.test"
    assert asked.header("X-Forwarded-Proto") == "http"
    assert asked.header("X-Forwarded-For") == "127.0.0.1"
    assert asked.header("Cookie") == "c=1"  # every request header by default
    served = app.requests[-1]
    assert served.header_all("X-Auth-User") == ["alice"]  # replaced, not appended
    assert served.header("X-Auth-Role") == "admin"
    assert served.header("X-Auth-Extra") == "client"  # not listed: the client's stays
    # addAuthCookiesToResponse: the auth server's session replaces the app's.
    cookies = response.header_all("Set-Cookie")
    assert "session=fromauth; Path=/" in cookies
    assert "keep=1" in cookies
    assert "session=fromapp" not in cookies and "tracking=1" not in cookies


def test_regex_request_headers_method_and_trust(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, app = servers
    response = get(
        proxy.port,
        "/",
        host="regex.test",
        headers="X-Test: allow\r\nX-Auth-Evil: 1\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "X-Forwarded-Uri: /original\r\nAuthorization: secret\r\n",
    )
    assert response.status == 200
    asked = auth.requests[-1]
    assert asked.header("Authorization") is None  # not in authRequestHeaders
    assert asked.header("X-Test") == "allow"
    assert asked.header("X-Forwarded-For") == "10.0.0.1, 127.0.0.1"
    assert asked.header("X-Forwarded-Uri") == "/original"
    served = app.requests[-1]
    assert served.header("X-Auth-Evil") is None  # matched the regex: removed
    assert served.header("X-Auth-User") == "alice"
    assert served.header("X-Auth-Extra") == "1"
    assert served.header("X-Other") is None
    request = b"DELETE / HTTP/1.1\r\nHost: regex.test\r\nX-Test: allow\r\n\r\n"
    assert raw_request(proxy.port, request).status == 200
    assert auth.requests[-1].method == "DELETE"


def test_a_refusal_is_returned_as_is(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, app = servers
    before = len(app.requests)
    response = get(proxy.port, "/", host="plain.test", headers="X-Test: deny\r\n")
    assert response.status == 401
    assert response.body == b"denied"
    assert response.header("WWW-Authenticate") == 'Basic realm="x"'
    assert response.header_all("Set-Cookie") == ["a=1", "b=2"]
    assert len(app.requests) == before


def test_redirect_location(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, _ = servers
    response = get(proxy.port, "/", host="plain.test", headers="X-Test: redirect\r\n")
    assert response.status == 302
    assert response.header("Location") == f"{auth.url}/login?next=1"
    kept = get(proxy.port, "/", host="keep.test", headers="X-Test: redirect\r\n")
    assert kept.header("Location") == "/login?next=1"


def test_unreachable_auth_server_is_500(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, app = servers
    before = len(app.requests)
    assert get(proxy.port, "/", host="down.test").status == 500
    assert len(app.requests) == before


def test_pipelined_requests_wait_their_turn(proxy) -> None:  # type: ignore[no-untyped-def]
    with connect(proxy.port) as sock:
        sock.sendall(
            b"GET /1 HTTP/1.1\r\nHost: plain.test\r\nX-Test: slow\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: plain.test\r\nX-Test: deny\r\n\r\n"
        )
        reader = ResponseReader(sock)
        assert reader.read().status == 200
        assert reader.read().status == 401


def test_bad_options_name_their_key(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        """
[http.middlewares.noaddr.forwardAuth]
[http.middlewares.scheme.forwardAuth]
address = "ftp://auth/"
[http.middlewares.re.forwardAuth]
address = "http://auth/"
authResponseHeadersRegex = "(unclosed"
[http.middlewares.body.forwardAuth]
address = "http://auth/"
forwardBody = true
""",
    )
    assert code != 0
    assert "http.middlewares.noaddr.forwardAuth.address: must be an http or https URL" in output
    assert "http.middlewares.scheme.forwardAuth.address: must be an http or https URL" in output
    assert "http.middlewares.re.forwardAuth.authResponseHeadersRegex: invalid regex" in output
    assert "http.middlewares.body.forwardAuth.forwardBody: forwarding the request body" in output
