"""redirectScheme, redirectRegex, replacePathRegex and stripPrefixRegex through a real turnout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout, get, request
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    check,
    last,
    proxy_factory_fixture,
    router,
    service,
)

MIDDLEWARES = """
[http.middlewares.tohttps.redirectScheme]
scheme = "https"
[http.middlewares.tohttps-perm.redirectScheme]
scheme = "https"
port = "8443"
permanent = true
[http.middlewares.tohttp.redirectScheme]
scheme = "http"
[http.middlewares.rx.redirectRegex]
regex = "^http://([^/]+)/old/(.*)"
replacement = "http://${1}/new/$2"
[http.middlewares.rx-perm.redirectRegex]
regex = "^http://[^/]+/old/(?P<rest>.*)"
replacement = "https://elsewhere.example/$rest"
permanent = true
[http.middlewares.fix.replacePathRegex]
regex = "^/oops/(.*)"
replacement = "/fixed/$1"
[http.middlewares.enc.replacePathRegex]
regex = "^/a/(.*)"
replacement = "/b%2F$1"
[http.middlewares.noop.replacePathRegex]
regex = "^/oops/(.*)"
[http.middlewares.spr.stripPrefixRegex]
regex = ["/x/[a-z ]+", "/api/v[0-9]+"]
"""


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Turnout], app_backend: Backend) -> Turnout:
    routers = [
        router("https", ["tohttps"]),
        router("httpsperm", ["tohttps-perm"]),
        router("http", ["tohttp"]),
        router("rx", ["rx"]),
        router("rxperm", ["rx-perm"]),
        router("fix", ["fix"]),
        router("enc", ["enc"]),
        router("noop", ["noop"]),
        router("spr", ["spr"]),
    ]
    return proxy_factory(
        MIDDLEWARES + "".join(routers) + service(app_backend.url),
        entrypoint_extra='forwardedHeaders.trustedIPs = ["127.0.0.1"]',
    )


def send(proxy: Turnout, method: str, target: str, host: str, headers: str = "") -> object:
    raw = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n{headers}\r\n"
    return request(proxy.port, raw.encode())


# -- redirectScheme -----------------------------------------------------------


def test_redirect_scheme_get_is_302_and_keeps_host_path_and_query(proxy: Turnout) -> None:
    response = get(proxy.port, "/a/b?c=1&d", host="https.test")
    assert response.status == 302
    assert response.header("Location") == "https://https.test/a/b?c=1&d"
    assert response.body == b"Found"


def test_redirect_scheme_other_methods_get_307_and_the_port_of_host_is_dropped(
    proxy: Turnout, app_backend: Backend
) -> None:
    before = len(app_backend.requests)
    response = send(proxy, "POST", "/form", "https.test:8080")
    assert response.status == 307  # type: ignore[attr-defined]
    assert response.header("Location") == "https://https.test/form"  # type: ignore[attr-defined]
    assert len(app_backend.requests) == before  # answered by the middleware


def test_redirect_scheme_permanent_is_301_for_get_308_otherwise_with_the_port(
    proxy: Turnout,
) -> None:
    response = get(proxy.port, "/p", host="httpsperm.test")
    assert response.status == 301
    assert response.header("Location") == "https://httpsperm.test:8443/p"
    response = send(proxy, "PUT", "/p", "httpsperm.test")
    assert response.status == 308  # type: ignore[attr-defined]
    assert response.body == b"Permanent Redirect"  # type: ignore[attr-defined]


def test_redirect_scheme_passes_a_request_already_on_the_scheme(
    proxy: Turnout, app_backend: Backend
) -> None:
    # The trusted client says the original request came over https.
    response = get(proxy.port, "/here", host="https.test", headers="X-Forwarded-Proto: https\r\n")
    assert response.status == 200
    assert last(app_backend).target == "/here"
    # An upgrade's "wss" stands for https.
    response = get(proxy.port, "/ws", host="https.test", headers="X-Forwarded-Proto: wss\r\n")
    assert response.status == 200
    # To http from plain http on the default port: nothing to do.
    assert get(proxy.port, "/plain", host="http.test").status == 200
    # From plain http on another port, to http: the port goes.
    response = get(proxy.port, "/plain", host="http.test:8000")
    assert response.status == 302
    assert response.header("Location") == "http://http.test/plain"


# -- redirectRegex --------------------------------------------------------------


def test_redirect_regex_groups_and_statuses(proxy: Turnout, app_backend: Backend) -> None:
    response = get(proxy.port, "/old/x/y?q=1", host="rx.test")
    assert response.status == 302
    assert response.header("Location") == "http://rx.test/new/x/y?q=1"
    response = send(proxy, "DELETE", "/old/z", "rx.test")
    assert response.status == 307  # type: ignore[attr-defined]
    response = get(proxy.port, "/old/named", host="rxperm.test")
    assert response.status == 301
    assert response.header("Location") == "https://elsewhere.example/named"
    # No match: the request goes on to the service.
    assert get(proxy.port, "/other", host="rx.test").status == 200
    assert last(app_backend).target == "/other"


# -- replacePathRegex ---------------------------------------------------------------


def test_replace_path_regex_rewrites_with_groups_and_sets_x_replaced_path(
    proxy: Turnout, app_backend: Backend
) -> None:
    assert get(proxy.port, "/oops/some/thing?k=v", host="fix.test").status == 200
    received = last(app_backend)
    assert received.target == "/fixed/some/thing?k=v"
    assert received.header("X-Replaced-Path") == "/oops/some/thing"
    # No match: untouched, no header.
    get(proxy.port, "/fine", host="fix.test")
    assert last(app_backend).target == "/fine"
    assert last(app_backend).header("X-Replaced-Path") is None


def test_replace_path_regex_keeps_escapes_of_the_replacement(
    proxy: Turnout, app_backend: Backend
) -> None:
    assert get(proxy.port, "/a/c%20d", host="enc.test").status == 200
    received = last(app_backend)
    assert received.target == "/b%2Fc%20d"
    assert received.header("X-Replaced-Path") == "/a/c%20d"


def test_replace_path_regex_without_replacement_does_nothing(
    proxy: Turnout, app_backend: Backend
) -> None:
    get(proxy.port, "/oops/1", host="noop.test")
    assert last(app_backend).target == "/oops/1"


# -- stripPrefixRegex -----------------------------------------------------------------


def test_strip_prefix_regex_keeps_the_client_escaping(proxy: Turnout, app_backend: Backend) -> None:
    get(proxy.port, "/api/v2/a%20b%2Fc", host="spr.test")
    assert last(app_backend).target == "/a%20b%2Fc"
    # The matched prefix is unescaped ("/x/a b"); its escaped form is what goes.
    get(proxy.port, "/x/a%20b/rest", host="spr.test")
    received = last(app_backend)
    assert received.target == "/rest"
    assert received.header("X-Forwarded-Prefix") == "/x/a b"


def test_strip_prefix_regex_strips_the_first_matching_prefix(
    proxy: Turnout, app_backend: Backend
) -> None:
    get(proxy.port, "/api/v2/users?id=3", host="spr.test")
    received = last(app_backend)
    assert received.target == "/users?id=3"
    assert received.header("X-Forwarded-Prefix") == "/api/v2"
    get(proxy.port, "/x/abc", host="spr.test")
    assert last(app_backend).target == "/"  # the path left always starts with "/"
    get(proxy.port, "/other/api/v2", host="spr.test")  # matches, but not as a prefix
    assert last(app_backend).target == "/other/api/v2"
    assert last(app_backend).header("X-Forwarded-Prefix") is None


# -- configuration errors -------------------------------------------------------------


def test_bad_options_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = """
[http.middlewares.s1.redirectScheme]
port = "443"
[http.middlewares.s2.redirectScheme]
scheme = "https"
port = "x"
[http.middlewares.r1.redirectRegex]
regex = "^(unclosed"
[http.middlewares.p1.replacePathRegex]
regex = "a\\\\Cb"
replacement = "/x"
[http.middlewares.sp.stripPrefixRegex]
regex = ["/ok", "(["]
"""
    code, output = check(tmp_path, bad + router("a", ["s1"]) + service("http://127.0.0.1:1"))
    assert code != 0
    assert "dynamic.toml: http.middlewares.s1.redirectScheme.scheme: you must provide" in output
    assert "http.middlewares.s2.redirectScheme.port: invalid port 'x'" in output
    assert "http.middlewares.r1.redirectRegex.regex: invalid regexp" in output
    assert "http.middlewares.p1.replacePathRegex.regex: error compiling" in output
    assert "http.middlewares.sp.stripPrefixRegex.regex[1]: invalid regexp" in output
