"""ipAllowList / ipWhiteList and passTLSClientCert through a real turnout (client 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout, get
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    check,
    last,
    proxy_factory_fixture,
    router,
    service,
)

MIDDLEWARES = """
[http.middlewares.local.ipAllowList]
sourceRange = ["10.0.0.0/8", "127.0.0.1"]
[http.middlewares.tens.ipAllowList]
sourceRange = ["10.0.0.0/8", "::1"]
[http.middlewares.tens-404.ipAllowList]
sourceRange = ["10.0.0.0/8"]
rejectStatusCode = 404
[http.middlewares.depth1.ipAllowList]
sourceRange = ["10.0.0.0/8"]
ipStrategy.depth = 1
[http.middlewares.depth2.ipAllowList]
sourceRange = ["10.0.0.0/8"]
ipStrategy.depth = 2
[http.middlewares.excluded.ipAllowList]
sourceRange = ["192.0.2.0/24"]
ipStrategy.excludedIPs = ["10.0.0.0/8", "198.51.100.7"]
[http.middlewares.old.ipWhiteList]
sourceRange = ["10.0.0.0/8"]
[http.middlewares.cert.passTLSClientCert]
pem = true
info.notAfter = true
"""

ROUTERS = "".join(
    router(name, [name])
    for name in ("local", "tens", "tens-404", "depth1", "depth2", "excluded", "old", "cert")
)


@pytest.fixture(scope="module")
def dynamic(app_backend: Backend) -> str:
    return MIDDLEWARES + ROUTERS + service(app_backend.url)


@pytest.fixture(scope="module")
def trusting(proxy_factory: Callable[..., Turnout], dynamic: str) -> Turnout:
    """Trusts 127.0.0.1's X-Forwarded-For."""
    return proxy_factory(dynamic, entrypoint_extra='forwardedHeaders.trustedIPs = ["127.0.0.1"]')


def xff(value: str) -> str:
    return f"X-Forwarded-For: {value}\r\n"


def test_the_peer_address_is_checked_by_default(trusting: Turnout) -> None:
    assert get(trusting.port, host="local.test").status == 200
    refused = get(trusting.port, host="tens.test")
    assert refused.status == 403
    assert refused.body == b"Forbidden"
    # X-Forwarded-For does not matter without an ipStrategy.
    assert get(trusting.port, host="tens.test", headers=xff("10.1.2.3")).status == 403


def test_reject_status_code(trusting: Turnout) -> None:
    refused = get(trusting.port, host="tens-404.test")
    assert refused.status == 404
    assert refused.body == b"Not Found"


def test_depth_counts_from_the_right_of_x_forwarded_for(trusting: Turnout) -> None:
    headers = xff("192.0.2.9, 10.9.9.9")
    assert get(trusting.port, host="depth1.test", headers=headers).status == 200
    assert get(trusting.port, host="depth2.test", headers=headers).status == 403
    headers = xff("10.1.1.1, 192.0.2.9")
    assert get(trusting.port, host="depth2.test", headers=headers).status == 200
    # Shorter than the depth, or absent: no address, refused.
    assert get(trusting.port, host="depth2.test", headers=xff("10.1.1.1")).status == 403
    assert get(trusting.port, host="depth1.test").status == 403


def test_excluded_ips_skip_known_proxies_from_the_right(trusting: Turnout) -> None:
    headers = xff("203.0.113.1, 192.0.2.44, 198.51.100.7, 10.0.0.2")
    assert get(trusting.port, host="excluded.test", headers=headers).status == 200
    headers = xff("192.0.2.44, 203.0.113.1, 10.0.0.2")
    assert get(trusting.port, host="excluded.test", headers=headers).status == 403


def test_the_deprecated_ip_white_list_works_the_same(trusting: Turnout) -> None:
    assert get(trusting.port, host="old.test").status == 403


def test_an_untrusted_client_cannot_choose_its_address(
    proxy_factory: Callable[..., Turnout], dynamic: str
) -> None:
    untrusting = proxy_factory(dynamic)
    # The entry point drops X-Forwarded-For from an untrusted client, as Traefik does.
    assert get(untrusting.port, host="depth1.test", headers=xff("10.1.1.1")).status == 403
    assert get(untrusting.port, host="local.test").status == 200


def test_pass_tls_client_cert_passes_requests_unchanged(
    trusting: Turnout, app_backend: Backend
) -> None:
    response = get(trusting.port, "/c?x=1", host="cert.test", headers="X-Custom: 1\r\n")
    assert response.status == 200
    received = last(app_backend)
    assert received.target == "/c?x=1"
    assert received.header("X-Custom") == "1"
    assert received.header("X-Forwarded-Tls-Client-Cert") is None


def test_bad_options_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = """
[http.middlewares.a.ipAllowList]
[http.middlewares.b.ipAllowList]
sourceRange = ["10.0.0.0/8", "10.0.0.300"]
[http.middlewares.c.ipAllowList]
sourceRange = ["10.0.0.0/8"]
rejectStatusCode = 999
[http.middlewares.d.ipAllowList]
sourceRange = ["10.0.0.0/8"]
ipStrategy.depth = -1
[http.middlewares.e.ipAllowList]
sourceRange = ["10.0.0.0/8"]
ipStrategy.excludedIPs = ["nope"]
[http.middlewares.f.ipWhiteList]
sourceRange = ["x/8"]
"""
    code, output = check(tmp_path, bad + router("r", ["a"]) + service("http://127.0.0.1:1"))
    assert code != 0
    assert "dynamic.toml: http.middlewares.a.ipAllowList.sourceRange: no IPs" in output
    assert "http.middlewares.b.ipAllowList.sourceRange[1]: invalid IP or CIDR" in output
    assert "http.middlewares.c.ipAllowList.rejectStatusCode: invalid HTTP status code 999" in output
    assert "http.middlewares.d.ipAllowList.ipStrategy.depth: depth must not be negative" in output
    assert "http.middlewares.e.ipAllowList.ipStrategy.excludedIPs[0]: invalid" in output
    assert "http.middlewares.f.ipWhiteList.sourceRange[0]: invalid IP or CIDR" in output
