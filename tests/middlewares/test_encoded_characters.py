"""encodedCharacters through a real turnout: Traefik's defaults refuse, each option allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout
from tests.integration.harness import request as raw_request
from tests.middlewares.support import run_check
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_backend_fixture,
    module_proxy_fixture,
    service,
)

ALL_OPTIONS = (
    "allowEncodedSlash",
    "allowEncodedBackSlash",
    "allowEncodedNullCharacter",
    "allowEncodedSemicolon",
    "allowEncodedPercent",
    "allowEncodedQuestionMark",
    "allowEncodedHash",
)
ENCODED = {
    "allowEncodedSlash": ["%2F", "%2f"],
    "allowEncodedBackSlash": ["%5C", "%5c"],
    "allowEncodedNullCharacter": ["%00"],
    "allowEncodedSemicolon": ["%3B", "%3b"],
    "allowEncodedPercent": ["%25"],
    "allowEncodedQuestionMark": ["%3F", "%3f"],
    "allowEncodedHash": ["%23"],
}


@pytest.fixture(scope="module")
def proxy(module_backend: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    everything = "".join(f"{option} = true\n" for option in ALL_OPTIONS)
    dynamic = (
        "[http.middlewares.strict.encodedCharacters]\n"
        "[http.middlewares.slash.encodedCharacters]\nallowEncodedSlash = true\n"
        f"[http.middlewares.open.encodedCharacters]\n{everything}"
        '[http.middlewares.fix.replacePathRegex]\nregex = "^/legacy/.*"\nreplacement = "/clean"\n'
        + host_router("strict", ["strict"])
        + host_router("slash", ["slash"])
        + host_router("open", ["open"])
        + host_router("stripped", ["fix", "strict"])
        + service(module_backend.url)
    )
    return module_proxy(dynamic)


def status(port: int, host: str, target: str) -> int:
    raw = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    return raw_request(port, raw).status


@pytest.mark.parametrize("option", ALL_OPTIONS)
def test_each_encoded_character_is_refused_by_default(proxy: Turnout, option: str) -> None:
    for token in ENCODED[option]:
        response = raw_request(
            proxy.port, f"GET /x{token}y HTTP/1.1\r\nHost: strict.test\r\n\r\n".encode()
        )
        assert response.status == 400, token
        assert response.body == b""
        assert status(proxy.port, "open.test", f"/x{token}y") == 200, token


def test_one_option_allows_one_character(proxy: Turnout, module_backend: Backend) -> None:
    assert status(proxy.port, "slash.test", "/files/a%2Fb") == 200
    assert module_backend.requests[-1].target == "/files/a%2Fb"  # passed on as it came
    assert status(proxy.port, "slash.test", "/files/a%5Cb") == 400


def test_what_is_not_refused(proxy: Turnout) -> None:
    assert status(proxy.port, "strict.test", "/plain/path") == 200
    assert status(proxy.port, "strict.test", "/caf%C3%A9%20bar%41") == 200
    assert status(proxy.port, "strict.test", "/search?q=a%2Fb%23c%00") == 200  # the query


def test_a_truncated_escape_is_refused(proxy: Turnout) -> None:
    assert status(proxy.port, "strict.test", "/ends-with%2") == 400
    assert status(proxy.port, "strict.test", "/ends-with%") == 400


def test_the_path_is_read_after_the_middlewares_before_it(proxy: Turnout) -> None:
    # replacePathRegex rewrites /legacy/... first: what reaches encodedCharacters is clean.
    assert status(proxy.port, "stripped.test", "/legacy/a%2Fb") == 200
    assert status(proxy.port, "stripped.test", "/other%2F") == 400


def test_options_are_booleans(tmp_path: Path) -> None:
    code, output = check(
        tmp_path,
        '[http.middlewares.bad.encodedCharacters]\nallowEncodedSlash = "maybe"\n'
        + service("http://127.0.0.1:1"),
    )
    assert code != 0
    assert "http.middlewares.bad.encodedCharacters.allowEncodedSlash" in output


# entryPoints.N.http.encodedCharacters: the same check for every router of one entry point.
GUARD = """
[entryPoints.guarded.http.encodedCharacters]
allowEncodedSlash = false
allowEncodedNullCharacter = false
"""


@pytest.fixture(scope="module")
def guarded(module_backend: Backend, module_proxy: Callable[..., Turnout]) -> Turnout:
    everything = "".join(f"{option} = true\n" for option in ALL_OPTIONS)
    dynamic = (
        f"[http.middlewares.open.encodedCharacters]\n{everything}"
        '[http.middlewares.tag.headers.customResponseHeaders]\nX-Tag = "seen"\n'
        + host_router("plain", [])
        + host_router("lenient", ["open"])
        + host_router("tagged", ["tag"])
        + service(module_backend.url)
    )
    return module_proxy(dynamic, entrypoints=("web", "guarded"), static_extra=GUARD)


def test_an_entry_point_refuses_what_it_does_not_allow(
    guarded: Turnout, module_backend: Backend
) -> None:
    port = guarded.ports["guarded"]
    before = len(module_backend.requests)
    for target in ("/a%2Fb", "/a%2fb", "/a%00b", "/ends-with%2"):
        response = raw_request(port, f"GET {target} HTTP/1.1\r\nHost: plain.test\r\n\r\n".encode())
        assert (response.status, response.body) == (400, b""), target
    assert len(module_backend.requests) == before  # none reached the backend
    # What it does not refuse: the other characters, and anything in the query.
    assert status(port, "plain.test", "/a%3Bb%5C%25") == 200
    assert status(port, "plain.test", "/search?q=a%2Fb%00") == 200
    assert module_backend.requests[-1].target == "/search?q=a%2Fb%00"


def test_every_option_allows_by_default_on_an_entry_point(guarded: Turnout) -> None:
    # The same routers on the entry point without the option: Traefik v3.7's defaults allow.
    port = guarded.ports["web"]
    for tokens in ENCODED.values():
        for token in tokens:
            assert status(port, "plain.test", f"/x{token}y") == 200, token


def test_the_entry_point_checks_before_the_routers_middlewares(guarded: Turnout) -> None:
    port = guarded.ports["guarded"]
    # A router's encodedCharacters allowing everything does not undo its entry point's ...
    assert status(port, "lenient.test", "/a%2Fb") == 400
    # ... and the router's middlewares never see the refusal.
    response = raw_request(port, b"GET /a%2Fb HTTP/1.1\r\nHost: tagged.test\r\n\r\n")
    assert (response.status, response.header("X-Tag")) == (400, None)
    allowed = raw_request(port, b"GET /a%3Bb HTTP/1.1\r\nHost: tagged.test\r\n\r\n")
    assert (allowed.status, allowed.header("X-Tag")) == (200, "seen")


def test_the_entry_point_checks_only_once_a_router_matched(guarded: Turnout) -> None:
    # As Traefik (the check is part of each router's chain): no router, 404.
    assert status(guarded.ports["guarded"], "nobody.test", "/a%2Fb") == 404


def test_entry_point_options_are_booleans(tmp_path: Path) -> None:
    done = run_check(
        tmp_path,
        service("http://127.0.0.1:1"),
        static_extra='[entryPoints.web.http.encodedCharacters]\nallowEncodedHash = "no"\n',
    )
    assert done.returncode != 0
    assert "entryPoints.web.http.encodedCharacters.allowEncodedHash" in done.stderr + done.stdout
