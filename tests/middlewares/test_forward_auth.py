"""forwardAuth through a real turnout and a real auth server."""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
import subprocess
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
    free_port,
    get,
    ok_response,
    wait_until,
)
from tests.integration.harness import request as raw_request
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_proxy_fixture,
    service,
)
from tests.runtime.support import require_binary


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
    if verdict == "big":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
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
[http.middlewares.body.forwardAuth]
address = "{auth_url}/verify"
forwardBody = true
headerField = "X-Auth-User"
[http.middlewares.spooled.buffering]
memRequestBodyBytes = 100
[http.middlewares.small.forwardAuth]
address = "{auth_url}/verify"
forwardBody = true
maxBodySize = 5
maxResponseBodySize = 10
"""


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "access.json"


@pytest.fixture(scope="module")
def proxy(
    servers: tuple[Backend, Backend], module_proxy: Callable[..., Turnout], access_log: Path
) -> Turnout:
    auth, app = servers
    names = ("plain", "regex", "keep", "down", "body", "small")
    routers = "".join(host_router(n, [n]) for n in names)
    routers += host_router("spooled", ["spooled", "body"])
    return module_proxy(
        middlewares(auth.url) + routers + service(app.url),
        entrypoint_extra="forwardedHeaders.insecure = true",
        static_extra=f'[accessLog]\nfilePath = "{access_log}"\nformat = "json"\n',
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


def test_forward_body_goes_to_the_auth_server_and_the_service(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, app = servers
    form = b"name=alice&x=" + b"y" * 100_000  # more than one read
    response = raw_request(
        proxy.port,
        b"POST /form HTTP/1.1\r\nHost: body.test\r\nContent-Length: %d\r\n\r\n" % len(form) + form,
    )
    assert response.status == 200
    assert auth.requests[-1].method == "GET"  # the body, without preserveRequestMethod
    assert auth.requests[-1].body == form
    assert app.requests[-1].body == form  # and the service still gets it
    response = raw_request(
        proxy.port,
        b"POST /form HTTP/1.1\r\nHost: body.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert response.status == 200
    assert auth.requests[-1].body == b"hello world"  # the payload, not the chunks
    assert app.requests[-1].body == b"hello world"
    # No body: nothing waits.
    assert get(proxy.port, "/", host="body.test").status == 200
    assert auth.requests[-1].body == b""


def test_forward_body_after_buffering_spooled_it(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, app = servers
    form = bytes(range(256)) * 40  # 10 kB: past buffering's memRequestBodyBytes, in a file
    response = raw_request(
        proxy.port,
        b"POST /f HTTP/1.1\r\nHost: spooled.test\r\nContent-Length: %d\r\n\r\n" % len(form) + form,
    )
    assert response.status == 200
    assert auth.requests[-1].body == form
    assert app.requests[-1].body == form
    chunked = (
        b"POST /f HTTP/1.1\r\nHost: spooled.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(form), form) for _ in range(2))
        + b"0\r\n\r\n"
    )
    assert raw_request(proxy.port, chunked).status == 200
    assert auth.requests[-1].body == form * 2  # the payload, without the framing
    assert app.requests[-1].body == form * 2


def test_header_field_names_the_user_in_the_access_log(proxy, access_log: Path) -> None:  # type: ignore[no-untyped-def]
    def last_user() -> str:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        return json.loads(lines[-1])["ClientUsername"] if lines else ""

    # "body" has headerField = "X-Auth-User"; the auth server answers "alice".
    assert get(proxy.port, "/who", host="body.test").status == 200
    assert wait_until(lambda: last_user() == "alice", 5), access_log.read_text()[-500:]
    assert get(proxy.port, "/who", host="plain.test").status == 200  # no headerField
    assert wait_until(lambda: last_user() == "-", 5)


def test_max_body_size_is_a_401_before_asking(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    auth, app = servers
    asked, served = len(auth.requests), len(app.requests)
    request = b"POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 6\r\n\r\nsix!!!"
    assert raw_request(proxy.port, request).status == 401
    chunked = (
        b"POST / HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    )
    assert raw_request(proxy.port, chunked).status == 401
    assert (len(auth.requests), len(app.requests)) == (asked, served)
    request = b"POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 5\r\n\r\nfive!"
    assert raw_request(proxy.port, request).status == 200
    assert auth.requests[-1].body == b"five!"


def test_an_auth_answer_over_max_response_body_size_is_a_401(proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, app = servers
    served = len(app.requests)
    assert get(proxy.port, "/", host="small.test", headers="X-Test: big\r\n").status == 401
    assert len(app.requests) == served


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
[http.middlewares.size.forwardAuth]
address = "http://auth/"
maxBodySize = -2
[http.middlewares.ca.forwardAuth]
address = "https://auth/"
tls.ca = "/nonexistent/ca.pem"
[http.middlewares.keyonly.forwardAuth]
address = "https://auth/"
tls.key = "/nonexistent/key.pem"
""",
    )
    assert code != 0
    assert "http.middlewares.noaddr.forwardAuth.address: must be an http or https URL" in output
    assert "http.middlewares.scheme.forwardAuth.address: must be an http or https URL" in output
    assert "http.middlewares.re.forwardAuth.authResponseHeadersRegex: invalid regex" in output
    assert "http.middlewares.size.forwardAuth.maxBodySize" in output
    assert "http.middlewares.ca.forwardAuth.tls.ca: cannot load CA file" in output
    assert "http.middlewares.keyonly.forwardAuth.tls.cert: a key needs its certificate" in output


# -- tls: an https auth server with its own CA, asking for a client certificate --


def openssl(*args: str, cwd: Path) -> None:
    binary = require_binary("openssl")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(workdir: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate for ``name`` signed by the CA in ``workdir``."""
    (workdir / f"{name}.ext").write_text(extensions)
    key, request = f"{name}.key", f"{name}.csr"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key, cwd=workdir)
    openssl("req", "-new", "-key", key, "-subj", subject, "-out", request, cwd=workdir)
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=workdir,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("pki")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=workdir)
    openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Turnout Test CA", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.pem", cwd=workdir,
    )  # fmt: skip
    keys = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
    issue(workdir, "server", "/CN=127.0.0.1", keys + "subjectAltName=IP:127.0.0.1\n")
    issue(workdir, "client", "/CN=turnout-client", keys + "extendedKeyUsage=clientAuth\n")
    return workdir


class TlsAuthServer:
    """https on 127.0.0.1; answers 200 naming the client certificate's CN (or "none")."""

    def __init__(self, pki: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
        context.load_cert_chain(pki / "server.pem", pki / "server.key")
        context.verify_mode = ssl.CERT_OPTIONAL

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]
                subject = dict(item[0] for item in peer["subject"]) if peer else {}
                self.send_response(200)
                self.send_header("X-Client-Cn", subject.get("commonName", "none"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def tls_proxy(
    pki: Path, servers: tuple[Backend, Backend], module_proxy: Callable[..., Turnout]
) -> Iterator[Turnout]:
    _, app = servers
    server = TlsAuthServer(pki)
    url = f"https://127.0.0.1:{server.port}/verify"
    dynamic = (
        f'[http.middlewares.mtls.forwardAuth]\naddress = "{url}"\n'
        'authResponseHeaders = ["X-Client-Cn"]\n'
        "[http.middlewares.mtls.forwardAuth.tls]\n"
        f'ca = "{pki / "ca.pem"}"\ncert = "{pki / "client.pem"}"\nkey = "{pki / "client.key"}"\n'
        f'[http.middlewares.trusting.forwardAuth]\naddress = "{url}"\n'
        'authResponseHeaders = ["X-Client-Cn"]\n'
        f'[http.middlewares.trusting.forwardAuth.tls]\nca = "{pki / "ca.pem"}"\n'
        f'[http.middlewares.skip.forwardAuth]\naddress = "{url}"\n'
        'authResponseHeaders = ["X-Client-Cn"]\n'
        "[http.middlewares.skip.forwardAuth.tls]\ninsecureSkipVerify = true\n"
        f'[http.middlewares.system.forwardAuth]\naddress = "{url}"\n'
        + "".join(host_router(n, [n]) for n in ("mtls", "trusting", "skip", "system"))
        + service(app.url)
    )
    yield module_proxy(dynamic)
    server.stop()


def test_tls_ca_and_client_certificate(tls_proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, app = servers
    assert get(tls_proxy.port, "/", host="mtls.test").status == 200
    assert app.requests[-1].header("X-Client-Cn") == "turnout-client"
    assert get(tls_proxy.port, "/", host="trusting.test").status == 200
    assert app.requests[-1].header("X-Client-Cn") == "none"  # no certificate of its own


def test_tls_verification(tls_proxy, servers) -> None:  # type: ignore[no-untyped-def]
    _, app = servers
    served = len(app.requests)
    # The system trust store does not know the test CA: the auth server is not trusted.
    assert get(tls_proxy.port, "/", host="system.test").status == 500
    assert len(app.requests) == served
    assert get(tls_proxy.port, "/", host="skip.test").status == 200
