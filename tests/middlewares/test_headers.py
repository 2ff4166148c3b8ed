"""headers: custom headers, CORS and security headers through a real turnout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Received, Turnout, get, ok_response, request
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    check,
    last,
    proxy_factory_fixture,
    router,
    service,
)

MIDDLEWARES = """
[http.middlewares.custom.headers.customRequestHeaders]
X-Script-Name = "test"
X-Remove-Me = ""
X-Forwarded-Proto = "https"
X-Forwarded-Host = ""
Host = "backend.internal"
[http.middlewares.custom.headers.customResponseHeaders]
X-Custom-Response = "yes"
Server = ""

[http.middlewares.cors.headers]
accessControlAllowMethods = ["GET", "OPTIONS", "PUT"]
accessControlAllowHeaders = ["X-Token", "Content-Type"]
accessControlAllowOriginList = ["https://a.example", "https://b.example"]
accessControlAllowOriginListRegex = ["^https://.*\\\\.trusted\\\\.example$"]
accessControlExposeHeaders = ["X-Total"]
accessControlAllowCredentials = true
accessControlMaxAge = 100
addVaryHeader = true
customResponseHeaders.X-Only-Real = "1"

[http.middlewares.star.headers]
accessControlAllowOriginList = ["*"]

[http.middlewares.secure.headers]
frameDeny = true
contentTypeNosniff = true
browserXssFilter = true
contentSecurityPolicy = "default-src 'self'"
contentSecurityPolicyReportOnly = "script-src 'none'"
referrerPolicy = "no-referrer"
permissionsPolicy = "camera=()"
stsSeconds = 31536000
stsIncludeSubdomains = true
stsPreload = true
sslProxyHeaders = { X-Forwarded-Proto = "https" }

[http.middlewares.forced.headers]
stsSeconds = 60
forceSTSHeader = true
customFrameOptionsValue = "SAMEORIGIN"
frameDeny = true
customBrowserXSSValue = "0"

[http.middlewares.hosts.headers]
allowedHosts = ["ah.test"]
hostsProxyHeaders = ["X-Forwarded-Host"]
customResponseHeaders.X-Outer = "seen"

[http.middlewares.dev.headers]
allowedHosts = ["nowhere.test"]
isDevelopment = true
stsSeconds = 60
forceSTSHeader = true

# Only custom headers: the handler's fast path when the message has none of them.
[http.middlewares.plain.headers.customRequestHeaders]
X-Plain = "1"
X-Plain-Drop = ""
[http.middlewares.plain.headers.customResponseHeaders]
X-Plain-Response = "yes"
X-Frame-Options = ""

[http.middlewares.ssl.headers]
sslRedirect = true
sslProxyHeaders = { X-Forwarded-Proto = "https" }
[http.middlewares.ssltemp.headers]
sslRedirect = true
sslTemporaryRedirect = true
sslHost = "secure.example"
"""

NAMES = ("custom", "cors", "star", "secure", "forced", "hosts", "dev", "ssl", "ssltemp", "plain")


def backend_answer(received: Received) -> bytes:
    if received.target == "/quiet":  # no header a custom name could match
        return ok_response(extra="Server: backend\r\nVary: Accept-Encoding\r\n")
    if received.target == "/own":  # the backend's own value of a custom response header
        return ok_response(extra="x-plain-RESPONSE: backend\r\nServer: backend\r\n")
    return ok_response(
        extra="Server: backend\r\nX-Frame-Options: ALLOWALL\r\nVary: Accept-Encoding\r\n"
    )


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Turnout], app_backend: Backend) -> Turnout:
    app_backend.responder = backend_answer
    routers = "".join(router(name, [name]) for name in NAMES) + router("ah", ["hosts"])
    return proxy_factory(
        MIDDLEWARES + routers + service(app_backend.url),
        entrypoint_extra='forwardedHeaders.trustedIPs = ["127.0.0.1"]',
    )


def send(proxy: Turnout, method: str, host: str, headers: str = "", path: str = "/") -> object:
    raw = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
    return request(proxy.port, raw.encode())


# -- custom headers -------------------------------------------------------------


def test_custom_request_headers_set_replace_and_delete(
    proxy: Turnout, app_backend: Backend
) -> None:
    headers = "X-Remove-Me: 1\r\nX-Script-Name: old\r\nX-Forwarded-Host: evil\r\n"
    assert get(proxy.port, host="custom.test", headers=headers).status == 200
    received = last(app_backend)
    assert received.header_all("X-Script-Name") == ["test"]
    assert received.header("X-Remove-Me") is None
    # X-Forwarded-* are the entry point's in Traefik: a middleware may replace or drop them.
    assert received.header_all("X-Forwarded-Proto") == ["https"]
    assert received.header("X-Forwarded-Host") is None
    assert received.header("X-Forwarded-For") == "127.0.0.1"
    assert received.header_all("Host") == ["backend.internal"]  # Traefik sets req.Host


def test_custom_response_headers_set_and_delete(proxy: Turnout) -> None:
    response = get(proxy.port, host="custom.test")
    assert response.header("X-Custom-Response") == "yes"
    assert response.header("Server") is None
    assert response.header("Vary") == "Accept-Encoding"  # untouched without CORS


def test_plain_custom_request_headers_added_replaced_and_deleted(
    proxy: Turnout, app_backend: Backend
) -> None:
    # None of the names in the request: the new header is simply added.
    assert get(proxy.port, host="plain.test", headers="X-Other: kept\r\n").status == 200
    received = last(app_backend)
    assert received.header_all("X-Plain") == ["1"]
    assert received.header("X-Plain-Drop") is None
    assert received.header("X-Other") == "kept"
    # Present, in any case and more than once: every value replaced, or deleted.
    headers = "x-plain: old\r\nX-PLAIN: older\r\nx-plain-drop: 1\r\nX-Other: kept\r\n"
    assert get(proxy.port, host="plain.test", headers=headers).status == 200
    received = last(app_backend)
    assert received.header_all("X-Plain") == ["1"]
    assert received.header("X-Plain-Drop") is None
    assert received.header("X-Other") == "kept"


def test_plain_custom_response_headers_added_replaced_and_deleted(proxy: Turnout) -> None:
    quiet = get(proxy.port, "/quiet", host="plain.test")
    assert quiet.header_all("X-Plain-Response") == ["yes"]
    assert quiet.header("Server") == "backend"
    assert quiet.header("X-Frame-Options") is None
    # The backend's own value, in another case, is replaced; a deleted one is gone.
    own = get(proxy.port, "/own", host="plain.test")
    assert own.header_all("X-Plain-Response") == ["yes"]
    usual = get(proxy.port, host="plain.test")
    assert usual.header("X-Frame-Options") is None
    assert usual.header_all("X-Plain-Response") == ["yes"]
    assert usual.header("Vary") == "Accept-Encoding"


# -- CORS -----------------------------------------------------------------------


def test_a_preflight_is_answered_by_the_middleware(proxy: Turnout, app_backend: Backend) -> None:
    before = len(app_backend.requests)
    response = send(
        proxy,
        "OPTIONS",
        "cors.test",
        "Origin: https://b.example\r\nAccess-Control-Request-Method: PUT\r\n",
    )
    assert response.status == 200  # type: ignore[attr-defined]
    assert response.body == b""  # type: ignore[attr-defined]
    headers = dict(response.headers)  # type: ignore[attr-defined]
    assert headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert headers["Access-Control-Allow-Methods"] == "GET,OPTIONS,PUT"
    assert headers["Access-Control-Allow-Headers"] == "X-Token,Content-Type"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Max-Age"] == "100"
    assert headers["Content-Length"] == "0"
    # Nothing of the response side: no custom response header, no Vary.
    assert "X-Only-Real" not in headers and "Vary" not in headers
    assert len(app_backend.requests) == before


def test_a_preflight_from_an_unknown_origin_gets_no_allow_origin(proxy: Turnout) -> None:
    response = send(
        proxy,
        "OPTIONS",
        "cors.test",
        "Origin: https://c.example\r\nAccess-Control-Request-Method: GET\r\n",
    )
    assert response.status == 200  # type: ignore[attr-defined]
    assert response.header("Access-Control-Allow-Origin") is None  # type: ignore[attr-defined]


def test_options_without_request_method_goes_to_the_backend(
    proxy: Turnout, app_backend: Backend
) -> None:
    response = send(proxy, "OPTIONS", "cors.test", "Origin: https://a.example\r\n")
    assert response.status == 200  # type: ignore[attr-defined]
    assert last(app_backend).method == "OPTIONS"
    assert response.header("X-Only-Real") == "1"  # type: ignore[attr-defined]


def test_simple_requests_get_cors_response_headers(proxy: Turnout) -> None:
    response = get(proxy.port, host="cors.test", headers="Origin: https://a.example\r\n")
    assert response.header("Access-Control-Allow-Origin") == "https://a.example"
    assert response.header("Access-Control-Allow-Credentials") == "true"
    assert response.header("Access-Control-Expose-Headers") == "X-Total"
    assert response.header_all("Vary") == ["Accept-Encoding,Origin"]
    response = get(proxy.port, host="cors.test", headers="Origin: https://x.trusted.example\r\n")
    assert response.header("Access-Control-Allow-Origin") == "https://x.trusted.example"
    response = get(proxy.port, host="cors.test", headers="Origin: https://x.untrusted.example\r\n")
    assert response.header("Access-Control-Allow-Origin") is None


def test_a_wildcard_origin_is_sent_as_is(proxy: Turnout) -> None:
    response = get(proxy.port, host="star.test", headers="Origin: https://any.example\r\n")
    assert response.header("Access-Control-Allow-Origin") == "*"
    assert response.header("Vary") == "Accept-Encoding"  # addVaryHeader is off


# -- security headers ---------------------------------------------------------------


def test_security_headers_override_the_backend(proxy: Turnout) -> None:
    response = get(proxy.port, host="secure.test")
    assert response.header_all("X-Frame-Options") == ["DENY"]
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("X-XSS-Protection") == "1; mode=block"
    assert response.header("Content-Security-Policy") == "default-src 'self'"
    assert response.header("Content-Security-Policy-Report-Only") == "script-src 'none'"
    assert response.header("Referrer-Policy") == "no-referrer"
    assert response.header("Permissions-Policy") == "camera=()"
    # Plain HTTP: no Strict-Transport-Security ...
    assert response.header("Strict-Transport-Security") is None
    # ... unless a sslProxyHeaders header says the client used HTTPS.
    response = get(proxy.port, host="secure.test", headers="X-Forwarded-Proto: https\r\n")
    sts = response.header("Strict-Transport-Security")
    assert sts == "max-age=31536000; includeSubDomains; preload"


def test_force_sts_header_and_custom_values(proxy: Turnout) -> None:
    response = get(proxy.port, host="forced.test")
    assert response.header("Strict-Transport-Security") == "max-age=60"
    assert response.header_all("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.header("X-XSS-Protection") == "0"


def test_allowed_hosts_and_hosts_proxy_headers(proxy: Turnout) -> None:
    assert get(proxy.port, host="ah.test").status == 200
    # Host is compared as sent, port included.
    refused = get(proxy.port, host="ah.test:8080")
    assert refused.status == 500
    assert refused.body == b"Bad Host\n"
    assert refused.header("X-Outer") == "seen"  # the outer layer still sees it
    ok = get(proxy.port, host="ah.test:8080", headers="X-Forwarded-Host: ah.test\r\n")
    assert ok.status == 200


def test_is_development_disables_allowed_hosts_and_sts(proxy: Turnout) -> None:
    response = get(proxy.port, host="dev.test")
    assert response.status == 200
    assert response.header("Strict-Transport-Security") is None


def test_deprecated_ssl_redirect(proxy: Turnout, app_backend: Backend) -> None:
    response = get(proxy.port, "/a?b=1", host="ssl.test")
    assert response.status == 301
    assert response.header("Location") == "https://ssl.test/a?b=1"
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    response = get(proxy.port, "/a", host="ssl.test", headers="X-Forwarded-Proto: https\r\n")
    assert response.status == 200
    response = send(proxy, "POST", "ssltemp.test", "Content-Length: 0\r\n", "/form")
    assert response.status == 307  # type: ignore[attr-defined]
    assert response.header("Location") == "https://secure.example/form"  # type: ignore[attr-defined]


# -- configuration errors ---------------------------------------------------------------


def test_bad_options_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = """
[http.middlewares.a.headers.customRequestHeaders]
X-Split = "one\\r\\nInjected: two"
[http.middlewares.b.headers.customResponseHeaders]
"Bad Name" = "x"
[http.middlewares.c.headers]
contentSecurityPolicy = "a\\u0000b"
[http.middlewares.d.headers]
accessControlAllowOriginListRegex = ["(unclosed"]
[http.middlewares.e.headers]
[http.middlewares.f.headers]
accessControlAllowHeaders = ["ok", "not\\nok"]
"""
    code, output = check(tmp_path, bad + router("r", ["a"]) + service("http://127.0.0.1:1"))
    assert code != 0
    assert "dynamic.toml: http.middlewares.a.headers.customRequestHeaders.X-Split: " in output
    assert "http.middlewares.b.headers.customResponseHeaders.Bad Name: invalid header" in output
    assert "http.middlewares.c.headers.contentSecurityPolicy: a header value" in output
    assert "http.middlewares.d.headers.accessControlAllowOriginListRegex[0]: error" in output
    assert "http.middlewares.e.headers: headers configuration not valid" in output
    assert "http.middlewares.f.headers.accessControlAllowHeaders[1]: a header value" in output
