"""TCP rules: HostSNI, HostSNIRegexp, ClientIP, ALPN with && || ! and parentheses, priorities."""

from __future__ import annotations

import pytest

from proxy.rules import Route, RuleError, compile_node
from proxy.rules.tcp import (
    TCP_MATCHERS,
    ConnInfo,
    build_tcp_table,
    parse_tcp_rule,
    tcp_default_priority,
)


def matches(rule: str, sni: str = "", alpn: tuple[str, ...] = (), ip: str = "10.0.0.1") -> bool:
    return compile_node(parse_tcp_rule(rule), TCP_MATCHERS)(ConnInfo(sni, alpn, ip))


@pytest.mark.parametrize(
    ("rule", "sni", "expected"),
    [
        ("HostSNI(`*`)", "", True),
        ("HostSNI(`*`)", "a.example", True),
        ("HostSNI(`db.example`)", "db.example", True),
        ("HostSNI(`DB.Example.`)", "db.example", True),
        ("HostSNI(`db.example`)", "", False),
        ("HostSNI(`db.example`)", "x.db.example", False),
        ("HostSNI(`*.example`)", "db.example", True),
        ("HostSNI(`*.example`)", "a.db.example", False),
        ("HostSNI(`*.example`)", "example", False),
        ("HostSNIRegexp(`^db[0-9]+\\.example$`)", "db12.example", True),
        ("HostSNIRegexp(`^db[0-9]+\\.example$`)", "dbx.example", False),
        ("HostSNIRegexp(`^.*$`)", "", True),
        ("hostsni(`db.example`)", "db.example", True),  # names in any letter case
    ],
)
def test_host_sni(rule: str, sni: str, expected: bool) -> None:
    assert matches(rule, sni) is expected


def test_client_ip_alpn_and_operators() -> None:
    rule = "HostSNI(`a.example`) || (HostSNI(`b.example`) && !ALPN(`h2`))"
    assert matches(rule, "a.example", ("h2",))
    assert matches(rule, "b.example", ("http/1.1",))
    assert not matches(rule, "b.example", ("h2", "http/1.1"))
    assert matches("ClientIP(`10.0.0.0/8`)", ip="10.9.8.7")
    assert not matches("ClientIP(`10.0.0.0/8`)", ip="192.168.1.1")
    assert matches("ClientIP(`::ffff:10.0.0.1`)", ip="10.0.0.1")
    assert matches("ALPN(`postgresql`)", alpn=("postgresql",))
    assert not matches("ALPN(`postgresql`)")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("Host(`a`)", "unknown matcher 'Host'"),
        ("HostSNI(`a`, `b`)", "HostSNI takes 1 argument, got 2"),
        ("HostSNI(`a b`)", "not a hostname or IP"),
        ("HostSNI(`bücher.example`)", "non-ASCII"),
        ("ClientIP(`10.0.0.0/33`)", "invalid IP address or CIDR"),
        ("ALPN(`acme-tls/1`)", "is not allowed"),
        ("HostSNIRegexp(`(`)", "invalid regexp"),
        ("HostSNI(`a`) &&", "expected a matcher"),
    ],
)
def test_errors_say_what_is_wrong(rule: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(")):
        compile_node(parse_tcp_rule(rule), TCP_MATCHERS)


def test_priority_is_rule_length_then_order_given() -> None:
    routes = [
        Route("short", "HostSNI(`*`)"),
        Route("long", "HostSNI(`*`) && ClientIP(`10.0.0.0/8`)"),
        Route("explicit", "HostSNI(`*`)", priority=1000),
        Route("zero", "HostSNI(`*`) ", priority=0),  # 0 means the default: len(rule)
    ]
    table, errors = build_tcp_table(routes)
    assert errors == []
    assert [r.name for r in table.routes] == ["explicit", "long", "zero", "short"]
    assert tcp_default_priority("HostSNI(`*`)") == 12
    assert table.match_route(ConnInfo("", (), "10.1.1.1")).name == "explicit"  # type: ignore[union-attr]


def test_table_reports_bad_routes_with_router_name_and_keeps_the_rest() -> None:
    table, errors = build_tcp_table(
        [Route("bad@file", "ClientIP(`nope`)"), Route("good@file", "HostSNI(`*`)")]
    )
    assert [r.name for r in table.routes] == ["good@file"]
    assert len(errors) == 1 and "router 'bad@file'" in str(errors[0])
