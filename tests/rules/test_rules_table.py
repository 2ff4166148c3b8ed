"""The routing table: Traefik's order and priorities, errors, and the index that must
never change the answer of a linear scan."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.rules import (
    MAX_USER_PRIORITY,
    Route,
    RuleError,
    SimpleRequest,
    build_table,
    compile_rule,
    default_priority,
)
from proxy.rules import matcher as matcher_module


def table_of(*routes: Route):
    table, errors = build_table(list(routes))
    assert errors == []
    return table


# --- priorities and order ----------------------------------------------------


def test_default_priority_is_the_rule_length() -> None:
    assert default_priority("Host(`a.com`)") == len("Host(`a.com`)")
    assert default_priority("PathPrefix(`/api`)") == 18


def test_default_priority_counts_bytes_like_go() -> None:
    rule = "Path(`/café`)"
    assert default_priority(rule) == len(rule.encode()) == len(rule) + 1


def test_double_wildcard_hosts_lose_their_stars() -> None:
    # Traefik's GetRulePriority: positive `**.` Host expressions do not count their stars.
    assert default_priority("Host(`**.example.com`)") == len("Host(`**.example.com`)") - 2
    assert default_priority("!Host(`**.example.com`)") == len("!Host(`**.example.com`)")
    rule = "Host(`**.a.com`) || HOST(`**.b.com`)"
    assert default_priority(rule) == len(rule) - 4
    assert default_priority("Host(`*.example.com`)") == len("Host(`*.example.com`)")
    assert default_priority("Host(") == len("Host(")  # unparsable: plain length


def test_longer_rule_wins_by_default() -> None:
    table = table_of(
        Route("short", "PathPrefix(`/`)", None, "short"),
        Route("long", "PathPrefix(`/api`)", None, "long"),
    )
    assert table.match(SimpleRequest(path="/api/x")) == "long"
    assert table.match(SimpleRequest(path="/other")) == "short"
    assert [r.name for r in table.routes] == ["long", "short"]


def test_explicit_priority_wins_and_zero_means_default() -> None:
    table = table_of(
        Route("low", "PathPrefix(`/api`)", 1, "low"),
        Route("catchall", "PathPrefix(`/`)", None, "catchall"),
        Route("zero", "PathPrefix(`/api/v1`)", 0, "zero"),  # 0: default, as Traefik
    )
    assert table.match(SimpleRequest(path="/api")) == "catchall"
    assert table.match(SimpleRequest(path="/api/v1/x")) == "zero"
    assert [item.priority for item in table.compiled] == [21, 15, 1]


def test_negative_priorities_sort_last() -> None:
    table = table_of(
        Route("neg", "PathPrefix(`/`)", -5, "neg"),
        Route("one", "PathPrefix(`/`)", 1, "one"),
    )
    assert table.match(SimpleRequest()) == "one"


def test_equal_priorities_keep_the_given_order() -> None:
    # Traefik sorts by priority only and leaves ties to Go's map order (unspecified);
    # Turnout keeps the order the routes were given, so the result is reproducible.
    routes = [Route(f"r{i}", "PathPrefix(`/x`)", 10, i) for i in range(5)]
    assert table_of(*routes).match(SimpleRequest(path="/x")) == 0
    assert table_of(*reversed(routes)).match(SimpleRequest(path="/x")) == 4
    assert [r.name for r in table_of(*routes).routes] == ["r0", "r1", "r2", "r3", "r4"]


def test_same_length_rules_tie_by_order() -> None:
    a = Route("a", "Host(`a.example.com`)", None, "a")  # 20 chars
    b = Route("b", "PathPrefix(`/abcdef`)", None, "b")  # 20 chars
    assert default_priority(a.rule) == default_priority(b.rule)
    req = SimpleRequest(host="a.example.com", path="/abcdef")
    assert table_of(a, b).match(req) == "a"
    assert table_of(b, a).match(req) == "b"


def test_no_match_returns_none() -> None:
    table = table_of(Route("a", "Host(`a.com`)", None, "a"))
    assert table.match(SimpleRequest(host="b.com")) is None
    assert table.match_route(SimpleRequest(host="b.com")) is None
    empty, errors = build_table([])
    assert len(empty) == 0 and errors == []
    assert empty.match(SimpleRequest()) is None


# --- errors ------------------------------------------------------------------


def test_bad_routes_are_reported_with_their_name_and_left_out() -> None:
    table, errors = build_table(
        [
            Route("good", "Host(`a.com`)", None, "good"),
            Route("syntax@file", "Host(`a.com`", None, "x"),
            Route("regexp@file", "HostRegexp(`(a`)", None, "x"),
            Route("path@file", "Path(`nope`)", None, "x"),
            Route("arity@file", "Header(`X`)", None, "x"),
            Route("also-good", "PathPrefix(`/b`)", None, "also"),
        ]
    )
    assert len(table) == 2
    assert [e.router for e in errors] == ["syntax@file", "regexp@file", "path@file", "arity@file"]
    assert str(errors[0]) == (
        "router 'syntax@file': rule: column 13: expected ',' or ')', found end of rule"
    )
    assert "HostRegexp" in str(errors[1]) and "(a" in str(errors[1])
    assert errors[0].rule == "Host(`a.com`"
    assert all("\n" not in str(e) for e in errors)
    assert table.match(SimpleRequest(host="a.com")) == "good"
    assert table.match(SimpleRequest(host="b.com", path="/b")) == "also"


def test_priority_above_the_user_maximum_is_refused() -> None:
    table, errors = build_table(
        [
            Route("big@file", "PathPrefix(`/`)", MAX_USER_PRIORITY + 1, "x"),
            Route("max@file", "PathPrefix(`/`)", MAX_USER_PRIORITY, "max"),
            Route("api@internal", "PathPrefix(`/api`)", MAX_USER_PRIORITY + 10, "internal"),
        ]
    )
    assert [e.router for e in errors] == ["big@file"]
    assert "exceeds the max user-defined priority" in str(errors[0])
    assert errors[0].column is None
    assert table.match(SimpleRequest(path="/api")) == "internal"
    assert table.match(SimpleRequest(path="/")) == "max"


def test_rule_error_is_exported_type() -> None:
    with pytest.raises(RuleError):
        compile_rule("Nope(`x`)")


# --- the index ---------------------------------------------------------------


def test_ten_thousand_host_routes_use_the_host_index() -> None:
    routes = [
        Route(f"svc{i}", f"Host(`svc{i}.example.com`) && PathPrefix(`/api`)", None, i)
        for i in range(10_000)
    ]
    table = table_of(*routes)
    assert table.match(SimpleRequest(host="svc1234.example.com", path="/api/x")) == 1234
    assert table.match(SimpleRequest(host="svc1234.example.com", path="/web")) is None
    assert table.match(SimpleRequest(host="nope.example.com", path="/api")) is None
    # One candidate per host: the request costs one rule evaluation, not 10,000.
    assert len(table._host_groups["svc1234.example.com"]) == 1
    assert table._fallback == ()


def test_index_counts_rule_evaluations(monkeypatch) -> None:
    evaluations = 0

    def counting(name: str) -> None:
        real_build = matcher_module.HTTP_MATCHERS[name].build

        def counting_build(args):
            predicate = real_build(args)

            def counted(req):
                nonlocal evaluations
                evaluations += 1
                return predicate(req)

            return counted

        definition = matcher_module.MatcherDef((1,), counting_build)
        monkeypatch.setitem(matcher_module.HTTP_MATCHERS, name, definition)

    counting("Host")
    counting("PathPrefix")
    routes = [
        Route(f"svc{i}", f"Host(`svc{i}.example.com`) && PathPrefix(`/api`)", None, i)
        for i in range(2_000)
    ]
    routes.append(Route("regexp", "HostRegexp(`^svc1\\.`) && PathPrefix(`/x`)", None, "re"))
    table = table_of(*routes)
    req = SimpleRequest(host="svc1500.example.com", path="/api")
    evaluations = 0
    assert table.match(req) == 1500
    # Host is implied by the index, so only PathPrefix runs (plus the fallback route's).
    assert evaluations <= 2
    evaluations = 0
    assert table.match_linear(req).payload == 1500
    assert evaluations > 500  # every longer-or-equal rule before it


def test_or_of_hosts_and_path_index() -> None:
    table = table_of(
        Route("multi", "Host(`a.com`) || Host(`b.com`)", None, "multi"),
        Route("api", "PathPrefix(`/api`) && Method(`GET`)", None, "api"),
        Route("exact", "Path(`/api/health`)", 100, "exact"),
        Route("either", "Path(`/x`) || PathPrefix(`/y`)", None, "either"),
        Route("regexp", "PathRegexp(`^/z`)", None, "regexp"),
    )
    assert table.match(SimpleRequest(host="b.com")) == "multi"
    assert table.match(SimpleRequest(host="b.com.")) == "multi"
    assert table.match(SimpleRequest(host="c.com", path="/api/v1")) == "api"
    assert table.match(SimpleRequest("POST", "c.com", "/api/v1")) is None
    assert table.match(SimpleRequest(host="a.com", path="/api/health")) == "exact"
    assert table.match(SimpleRequest(host="c.com", path="/x")) == "either"
    assert table.match(SimpleRequest(host="c.com", path="/x/1")) is None
    assert table.match(SimpleRequest(host="c.com", path="/yy")) == "either"
    assert table.match(SimpleRequest(host="c.com", path="/zz")) == "regexp"


def test_contradictory_hosts_never_match() -> None:
    table = table_of(Route("none", "Host(`a.com`) && Host(`b.com`)", None, "x"))
    assert table.match(SimpleRequest(host="a.com")) is None
    assert table.match(SimpleRequest(host="b.com")) is None


# --- property: the index answers exactly as a linear scan --------------------

RULE_HOSTS = ["a.com", "b.com", "A.com", "a.com.", "x.a.com", "*.a.com", "**.a.com", "*"]
REQUEST_HOSTS = ["a.com", "b.com", "a.com.", "x.a.com", "y.x.a.com", "", "c.org", "b.com."]
RULE_PATHS = ["/", "/a", "/ab", "/a/b", "/api", "/apis", "/b"]
REQUEST_PATHS = ["/", "/a", "/ab", "/a/b", "/a/b/c", "/api", "/apis", "/api/x", "/b", "/c", ""]


def leaves() -> st.SearchStrategy[str]:
    host = st.sampled_from(RULE_HOSTS)
    path = st.sampled_from(RULE_PATHS)
    return st.one_of(
        host.map(lambda h: f"Host(`{h}`)"),
        host.map(lambda h: f"host(`{h}`)"),
        path.map(lambda p: f"Path(`{p}`)"),
        path.map(lambda p: f"PathPrefix(`{p}`)"),
        st.sampled_from(["GET", "post"]).map(lambda m: f"Method(`{m}`)"),
        st.sampled_from(["prod", "dev"]).map(lambda v: f"Header(`X-Env`, `{v}`)"),
        st.sampled_from(["Query(`q`)", "Query(`q`, `1`)", 'QueryRegexp("q", "^[0-9]$")']),
        st.sampled_from(["ClientIP(`10.0.0.0/8`)", "ClientIP(`::1`)"]),
        st.sampled_from(["HostRegexp(`^a\\.`)", "PathRegexp(`^/a`)", "HeaderRegexp(`X-Env`, `d`)"]),
    )


def rules() -> st.SearchStrategy[str]:
    return st.recursive(
        leaves(),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) && ({t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} && {t[1]}"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) || ({t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} || {t[1]}"),
            inner.map(lambda r: f"!({r})"),
        ),
        max_leaves=6,
    )


route_sets = st.lists(
    st.tuples(rules(), st.one_of(st.none(), st.just(0), st.integers(-3, 60))),
    min_size=0,
    max_size=25,
)

requests = st.builds(
    SimpleRequest,
    method=st.sampled_from(["GET", "POST", "get"]),
    host=st.sampled_from(REQUEST_HOSTS),
    path=st.sampled_from(REQUEST_PATHS),
    raw_query=st.sampled_from(["", "q", "q=1", "q=2", "x=1&q=1"]),
    client_ip=st.sampled_from(["10.1.1.1", "::1", "192.0.2.1"]),
    headers=st.sampled_from([{}, {"X-Env": "prod"}, {"x-env": ["dev", "prod"]}]),
)


def naive_match(routes: list[Route], req: SimpleRequest) -> Route | None:
    """An independent linear scan: Traefik's order from scratch, every rule compiled alone."""
    ordered = sorted(
        enumerate(routes),
        key=lambda item: (-(item[1].priority or default_priority(item[1].rule)), item[0]),
    )
    for _, route in ordered:
        if compile_rule(route.rule)(req):
            return route
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route_sets, st.lists(requests, min_size=1, max_size=8))
def test_index_matches_a_linear_scan(specs, reqs) -> None:
    routes = [Route(f"r{i}", rule, priority, i) for i, (rule, priority) in enumerate(specs)]
    table, errors = build_table(routes)
    assert errors == []
    for req in reqs:
        expected = naive_match(routes, req)
        assert table.match_linear(req) is expected
        assert table.match_route(req) is expected
        assert table.match(req) == (None if expected is None else expected.payload)


@settings(max_examples=100, deadline=None)
@given(route_sets, st.lists(requests, min_size=1, max_size=8))
def test_index_with_fallback_kept_apart(specs, reqs) -> None:
    routes = [Route(f"r{i}", rule, priority, i) for i, (rule, priority) in enumerate(specs)]
    saved = matcher_module._MERGE_BUDGET
    matcher_module._MERGE_BUDGET = 0  # fallback routes scanned as their own list
    try:
        table, _ = build_table(routes)
    finally:
        matcher_module._MERGE_BUDGET = saved
    for req in reqs:
        assert table.match_route(req) is table.match_linear(req)
        assert table.match_route(req) is naive_match(routes, req)
