"""encodedCharacters through a real turnout: Traefik's defaults refuse, each option allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout
from tests.integration.harness import request as raw_request
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
