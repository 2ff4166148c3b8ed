"""Each HTTP matcher with Traefik v3 semantics (pkg/muxer/http/matcher.go)."""

from __future__ import annotations

import pytest

from proxy.rules import RuleError, SimpleRequest, compile_rule, parse_query
from proxy.rules import matcher as matcher_module


def matches(rule: str, **request) -> bool:
    return compile_rule(rule)(SimpleRequest(**request))


# --- Host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "host", "expected"),
    [
        ("Host(`example.com`)", "example.com", True),
        ("Host(`EXAMPLE.com`)", "example.com", True),  # the rule is lower-cased
        ("Host(`example.com`)", "www.example.com", False),
        ("Host(`example.com`)", "example.org", False),
        ("Host(`example.com`)", "", False),
        ("Host(`example.com`)", "example.com.", True),  # trailing dot on the request
        ("Host(`example.com.`)", "example.com", True),  # trailing dot on the rule
        ("Host(`example.com.`)", "example.com.", True),
        ("Host(`example.com`)", "example.com..", False),
        ("Host(`::1`)", "::1", True),
        ("Host(`*.example.com`)", "a.example.com", True),
        ("Host(`*.example.com`)", "a.b.example.com", False),
        ("Host(`*.example.com`)", "example.com", False),
        ("Host(`*.example.com`)", "aexample.com", False),
        ("Host(`*.example.com`)", "a.example.com.", True),
        ("Host(`*.example.com.`)", "a.example.com", True),
        ("Host(`*.Example.COM`)", "x.example.com", True),
        ("Host(`**.example.com`)", "a.example.com", True),
        ("Host(`**.example.com`)", "a.b.example.com", True),
        ("Host(`**.example.com`)", "example.com", False),
        ("Host(`**.example.com`)", ".example.com", False),
        ("Host(`**.example.com`)", "aexample.com", False),
        ("Host(`*`)", "localhost", True),  # Traefik: `*` replaces the one and only label
        ("Host(`*`)", "a.b", False),
        ("Host(`*`)", "", False),
    ],
)
def test_host(rule: str, host: str, expected: bool) -> None:
    assert matches(rule, host=host) is expected


def test_host_refuses_non_ascii() -> None:
    with pytest.raises(RuleError, match="non-ASCII") as info:
        compile_rule("Path(`/`) && Host(`bücher.de`)")
    assert info.value.column == 14


# --- HostRegexp --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "host", "expected"),
    [
        (r"HostRegexp(`^[a-z]+\.example\.com$`)", "www.example.com", True),
        (r"HostRegexp(`^[a-z]+\.example\.com$`)", "a.b.example.com", False),
        (r"HostRegexp(`example`)", "www.example.com", True),  # MatchString: unanchored
        (r"HostRegexp(`^example`)", "www.example.com", False),
        (r"HostRegexp(`^WWW\.`)", "www.example.com", False),  # the host is lower-case
        (r"HostRegexp(`(?i)^WWW\.`)", "www.example.com", True),
        (r"HostRegexp(`^.+\.example\.com$`)", "example.com", False),
    ],
)
def test_host_regexp(rule: str, host: str, expected: bool) -> None:
    assert matches(rule, host=host) is expected


def test_host_regexp_refuses_non_ascii() -> None:
    with pytest.raises(RuleError, match="non-ASCII"):
        compile_rule("HostRegexp(`^bücher`)")


# --- Path, PathPrefix, PathRegexp --------------------------------------------


@pytest.mark.parametrize(
    ("rule", "path", "expected"),
    [
        ("Path(`/css`)", "/css", True),
        ("Path(`/css`)", "/css/", False),
        ("Path(`/css`)", "/CSS", False),
        ("Path(`/css`)", "/css/main.css", False),
        ("Path(`/foo bar`)", "/foo bar", True),  # the engine gives the decoded path
        ("PathPrefix(`/api`)", "/api", True),
        ("PathPrefix(`/api`)", "/api/v1", True),
        ("PathPrefix(`/api`)", "/apis", True),  # a plain string prefix
        ("PathPrefix(`/api/`)", "/api", False),
        ("PathPrefix(`/`)", "/anything", True),
        (r"PathRegexp(`^/v[0-9]+/`)", "/v2/users", True),
        (r"PathRegexp(`/users`)", "/v2/users/1", True),  # unanchored
        (r"PathRegexp(`^/users$`)", "/users/1", False),
        (r"PathRegexp(`\.(css|js)$`)", "/static/app.js", True),
        (r"PathRegexp(`^/a$`)", "/a\n", False),  # Go's $ is end of text, not before a newline
    ],
)
def test_paths(rule: str, path: str, expected: bool) -> None:
    assert matches(rule, path=path) is expected


@pytest.mark.parametrize("rule", ["Path(`css`)", "PathPrefix(`api`)", "Path(`*`)"])
def test_paths_must_start_with_a_slash(rule: str) -> None:
    with pytest.raises(RuleError, match="does not start with a '/'"):
        compile_rule(rule)


def test_path_regexp_needs_no_slash() -> None:
    assert matches("PathRegexp(`css`)", path="/main.css")


# --- Method ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "method", "expected"),
    [
        ("Method(`GET`)", "GET", True),
        ("Method(`get`)", "GET", True),  # the rule's method is upper-cased
        ("Method(`GET`)", "POST", False),
        ("Method(`GET`)", "get", False),  # the request's is compared as received (Go)
        ("Method(`PURGE`)", "PURGE", True),
    ],
)
def test_method(rule: str, method: str, expected: bool) -> None:
    assert matches(rule, method=method) is expected


# --- Header, HeaderRegexp ----------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "headers", "expected"),
    [
        ("Header(`X-Forwarded-Proto`, `https`)", {"X-Forwarded-Proto": "https"}, True),
        ("Header(`x-forwarded-proto`, `https`)", {"X-Forwarded-Proto": "https"}, True),
        ("Header(`X-Forwarded-Proto`, `https`)", {"X-Forwarded-Proto": ["http", "https"]}, True),
        ("Header(`X-Forwarded-Proto`, `https`)", {"X-Forwarded-Proto": "HTTPS"}, False),
        ("Header(`X-Forwarded-Proto`, `https`)", {"X-Forwarded-Proto": "http, https"}, False),
        ("Header(`X-Forwarded-Proto`, `https`)", {"X-Forwarded-Host": "https"}, False),
        ("Header(`X-Forwarded-Proto`, `https`)", {}, False),
        ("HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)", {"X-Forwarded-Proto": "http"}, True),
        ("HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)", {"X-Forwarded-Proto": "HTTPS"}, False),
        (
            "HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)",
            {"X-Forwarded-Proto": ["ws", "https"]},
            True,
        ),
        ("HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)", {}, False),
        # v2 syntax is plain text to a v3 regexp, as in Traefik's own tests
        (
            "HeaderRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
            {"X-Forwarded-Proto": "http{secure:s}"},
            True,
        ),
        (
            "HeaderRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
            {"X-Forwarded-Proto": "https"},
            False,
        ),
    ],
)
def test_headers(rule: str, headers: dict, expected: bool) -> None:
    assert matches(rule, headers=headers) is expected


# --- Query, QueryRegexp ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_query", "expected"),
    [
        ("", False),
        ("q=traefik", True),
        ("rel=ddg&q=traefik", True),
        ("q=traefik&q=proxy", True),
        ("q=awesome&q=traefik", True),
        ("q=nginx", False),
        ("rel=ddg", False),
        ("q=TRAEFIK", False),
        ("Q=traefik", False),
        ("rel=traefik", False),
        ("q=tra%65fik", True),
        ("%71=traefik", True),
        ("q=traefik;x=1", False),  # a pair with ';' is dropped (Go >= 1.17)
        ("x=1;y=2&q=traefik", True),
        ("q=traefik%zz", False),  # a bad escape drops the pair
        ("q=%zz&q=traefik", True),
    ],
)
def test_query_value(raw_query: str, expected: bool) -> None:
    assert matches("Query(`q`, `traefik`)", raw_query=raw_query) is expected


@pytest.mark.parametrize(
    ("raw_query", "expected"),
    [
        ("", False),
        ("mobile", True),
        ("mobile=", True),
        # One argument means an empty value, as in Traefik v3's code.
        ("mobile=true", False),
        ("x=1&mobile=true", False),
        ("x=1&mobile", True),
        ("mobiles=1", False),
        ("x=mobile", False),
    ],
)
def test_query_key_only(raw_query: str, expected: bool) -> None:
    assert matches("Query(`mobile`)", raw_query=raw_query) is expected
    assert matches("QueryRegexp(`mobile`)", raw_query=raw_query) is expected


def test_query_plus_is_a_space() -> None:
    assert matches("Query(`q`, `a b`)", raw_query="q=a+b")
    assert matches("Query(`q`, `a+b`)", raw_query="q=a%2Bb")
    assert not matches("Query(`q`, `a+b`)", raw_query="q=a+b")


@pytest.mark.parametrize(
    ("raw_query", "expected"),
    [
        ("q=traefik", True),
        ("q=nginx", True),
        ("q=awesome&q=nginx", True),
        ("q=NGINX", False),
        ("q=haproxy", False),
        ("rel=nginx", False),
        ("", False),
    ],
)
def test_query_regexp(raw_query: str, expected: bool) -> None:
    assert matches("QueryRegexp(`q`, `^(traefik|nginx)$`)", raw_query=raw_query) is expected


def test_parse_query_like_go() -> None:
    assert parse_query("a=1&b=2&a=3") == {"a": ["1", "3"], "b": ["2"]}
    assert parse_query("a&b=&=c") == {"a": [""], "b": [""], "": ["c"]}
    assert parse_query("&&a=1&") == {"a": ["1"]}
    assert parse_query("a=1=2") == {"a": ["1=2"]}
    assert parse_query("a=%C3%A9") == {"a": ["é"]}
    assert parse_query("a=%ff")["a"][0].encode("utf-8", "surrogateescape") == b"\xff"
    assert parse_query("a=%4") == {}


def test_query_is_parsed_lazily_and_once_per_request() -> None:
    # Observed through the one-entry cache, not by replacing parse_query: the
    # compiled matcher (proxy/native.py) calls it directly.
    cache = matcher_module._QUERIES
    cache.entry = ("", {})

    rule = compile_rule("Host(`a.com`) && Query(`x`) && QueryRegexp(`y`, `^1$`) && Query(`z`, `2`)")
    assert rule(SimpleRequest(host="a.com", raw_query="x&y=1&z=2"))
    raw, parsed = cache.entry
    assert raw == "x&y=1&z=2" and parsed == {"x": [""], "y": ["1"], "z": ["2"]}
    assert rule(SimpleRequest(host="a.com", raw_query="x&y=1&z=2"))
    assert cache.entry[1] is parsed  # three query matchers, the same request: one parse
    assert not rule(SimpleRequest(host="b.com", raw_query="x&y=1&z=3"))
    assert cache.entry == (raw, parsed)  # the Host conjunct failed first: nothing parsed
    assert cache.entry[1] is parsed
    assert not rule(SimpleRequest(host="a.com", raw_query="x&y=1&z=3"))
    assert cache.entry[0] == "x&y=1&z=3" and cache.entry[1]["z"] == ["3"]


# --- ClientIP ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "client_ip", "expected"),
    [
        ("ClientIP(`10.0.0.0/8`)", "10.1.2.3", True),
        ("ClientIP(`10.0.0.0/8`)", "11.1.2.3", False),
        ("ClientIP(`10.1.2.3/8`)", "10.200.0.1", True),  # host bits allowed, as Go
        ("ClientIP(`192.168.1.1`)", "192.168.1.1", True),
        ("ClientIP(`192.168.1.1`)", "192.168.1.2", False),
        ("ClientIP(`10.0.0.0/8`)", "::ffff:10.1.2.3", True),  # IPv4-mapped is IPv4
        ("ClientIP(`::ffff:192.168.1.1`)", "192.168.1.1", True),
        ("ClientIP(`2001:db8::/32`)", "2001:db8::1", True),
        ("ClientIP(`2001:db8::/32`)", "2001:db9::1", False),
        ("ClientIP(`2001:db8::/32`)", "10.0.0.1", False),
        ("ClientIP(`::1`)", "::1", True),
        ("ClientIP(`::1`)", "[::1]", True),
        ("ClientIP(`0.0.0.0/0`)", "::1", False),
        ("ClientIP(`::/0`)", "::1", True),
        ("ClientIP(`10.0.0.0/8`)", "", False),
        ("ClientIP(`10.0.0.0/8`)", "not-an-ip", False),
        ("ClientIP(`fe80::/10`)", "fe80::1%eth0", False),  # Go refuses zones
    ],
)
def test_client_ip(rule: str, client_ip: str, expected: bool) -> None:
    assert matches(rule, client_ip=client_ip) is expected


def test_client_ip_reads_only_the_peer_address() -> None:
    rule = compile_rule("ClientIP(`10.0.0.0/8`)")
    req = SimpleRequest(client_ip="192.0.2.1", headers={"X-Forwarded-For": "10.0.0.1"})
    assert not rule(req)


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "300.1.1.1", "10.0.0", "fe80::1%eth0", "a/b"])
def test_client_ip_refuses_bad_values(spec: str) -> None:
    with pytest.raises(RuleError, match="ClientIP") as info:
        compile_rule(f"ClientIP(`{spec}`)")
    assert info.value.column == 1


# --- combinations and negation -----------------------------------------------


def test_combinations() -> None:
    rule = compile_rule(
        "Host(`example.com`) && (PathPrefix(`/api`) || Path(`/health`)) && !Method(`DELETE`)"
    )
    assert rule(SimpleRequest("GET", "example.com", "/api/x"))
    assert rule(SimpleRequest("GET", "example.com", "/health"))
    assert not rule(SimpleRequest("DELETE", "example.com", "/api/x"))
    assert not rule(SimpleRequest("GET", "example.com", "/healthz"))
    assert not rule(SimpleRequest("GET", "example.org", "/api/x"))


def test_negated_matchers() -> None:
    assert matches("!Host(`a.com`)", host="b.com")
    assert not matches("!Host(`a.com`)", host="a.com")
    assert matches("!Host(`a.com`)", host="")
    assert matches("!Query(`x`)", raw_query="y=1")
    assert matches("!(Host(`a.com`) || PathPrefix(`/x`))", host="b.com", path="/y")
    assert not matches("!(Host(`a.com`) || PathPrefix(`/x`))", host="b.com", path="/xy")
