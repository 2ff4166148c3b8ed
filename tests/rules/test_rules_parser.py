"""Rule text -> tree: grammar, precedence, Go string literals, names, arity, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.rules import And, Matcher, MatcherDef, Or, Parser, RuleError, parse_rule, render
from proxy.rules.parser import MAX_DEPTH, negate


def m(name: str, *args: str, negated: bool = False) -> Matcher:
    return Matcher(name, args, negated)


def shape(node):
    """The tree without columns, for comparisons."""
    if isinstance(node, Matcher):
        return (("!" if node.negated else "") + node.name, node.args)
    kind = "and" if isinstance(node, And) else "or"
    return (kind, tuple(shape(child) for child in node.children))


A = ("Host", ("a",))
B = ("Path", ("/b",))
C = ("Method", ("GET",))


# --- precedence and negation -------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("Host(`a`)", A),
        ("Host(`a`) || Path(`/b`) && Method(`GET`)", ("or", (A, ("and", (B, C))))),
        ("Host(`a`) && Path(`/b`) || Method(`GET`)", ("or", (("and", (A, B)), C))),
        ("(Host(`a`) || Path(`/b`)) && Method(`GET`)", ("and", (("or", (A, B)), C))),
        ("Host(`a`) && Path(`/b`) && Method(`GET`)", ("and", (A, B, C))),
        ("Host(`a`) && (Path(`/b`) && Method(`GET`))", ("and", (A, B, C))),
        ("Host(`a`) || (Path(`/b`) || Method(`GET`))", ("or", (A, B, C))),
        ("((Host(`a`)))", A),
        ("!Host(`a`) && Path(`/b`)", ("and", (("!Host", ("a",)), B))),
        ("!(Host(`a`) && Path(`/b`))", ("or", (("!Host", ("a",)), ("!Path", ("/b",))))),
        ("!(Host(`a`) || Path(`/b`))", ("and", (("!Host", ("a",)), ("!Path", ("/b",))))),
        ("!!Host(`a`)", A),
        ("! ! !Host(`a`)", ("!Host", ("a",))),
        (
            "!(Host(`a`) && !(Path(`/b`) || Method(`GET`)))",
            ("or", (("!Host", ("a",)), B, C)),
        ),
        ("\n\tHost(`a`)\r\n&&\tPath(`/b`)  ", ("and", (A, B))),
    ],
)
def test_precedence_and_negation(rule: str, expected) -> None:
    assert shape(parse_rule(rule)) == expected


def test_no_not_node_survives_and_trees_are_flat() -> None:
    node = parse_rule("!((Host(`a`) || !Path(`/b`)) && !(Method(`GET`) && Host(`c`)))")
    # = !(Host a || !Path b) || (Method GET && Host c) = (!Host a && Path b) || (Method && Host c)
    assert shape(node) == (
        "or",
        (
            ("and", (("!Host", ("a",)), B)),
            ("and", (C, ("Host", ("c",)))),
        ),
    )


# A reference evaluator over the same alphabet, built from Python's own precedence
# (`not` > `and` > `or`), checks parsing + push-down on random expressions.
_ATOMS = {"Host(`a`)": "x", "Path(`/b`)": "y", "Method(`GET`)": "z"}


@st.composite
def expressions(draw, depth: int = 0) -> tuple[str, str]:
    if depth > 3 or draw(st.booleans()):
        rule, py = draw(st.sampled_from(sorted(_ATOMS.items())))
    else:
        op = draw(st.sampled_from(["&&", "||", "!", "()"]))
        if op == "!":
            inner, inner_py = draw(expressions(depth + 1))
            rule = f"!{inner}" if inner in _ATOMS else f"!({inner})"
            py = f"(not ({inner_py}))"
        elif op == "()":
            inner, inner_py = draw(expressions(depth + 1))
            rule, py = f"({inner})", f"({inner_py})"
        else:
            left, left_py = draw(expressions(depth + 1))
            right, right_py = draw(expressions(depth + 1))
            word = "and" if op == "&&" else "or"
            rule, py = f"{left} {op} {right}", f"{left_py} {word} {right_py}"
    return rule, py


def evaluate(node, env: dict[str, bool]) -> bool:
    if isinstance(node, Matcher):
        value = env[{"Host": "x", "Path": "y", "Method": "z"}[node.name]]
        return not value if node.negated else value
    results = [evaluate(child, env) for child in node.children]
    return all(results) if isinstance(node, And) else any(results)


@given(expressions(), st.booleans(), st.booleans(), st.booleans())
def test_random_expressions_follow_go_precedence(expr, x: bool, y: bool, z: bool) -> None:
    rule, py = expr
    env = {"x": x, "y": y, "z": z}
    assert evaluate(parse_rule(rule), env) == eval(py, {}, dict(env))


@given(expressions())
def test_render_round_trips(expr) -> None:
    node = parse_rule(expr[0])
    assert shape(parse_rule(render(node))) == shape(node)


# --- names and arguments -----------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    ["host(`a`)", "HOST(`a`)", "hOsT(`a`)", "Host(`a`)"],
)
def test_matcher_names_in_any_case(rule: str) -> None:
    assert shape(parse_rule(rule)) == A


def test_names_are_canonicalized() -> None:
    assert parse_rule("PATHPREFIX(`/x`)").name == "PathPrefix"
    assert parse_rule("headerregexp(`X`, `y`)").name == "HeaderRegexp"
    assert parse_rule("clientip(`::1`)").name == "ClientIP"


@pytest.mark.parametrize(
    ("rule", "args"),
    [
        ("Query(`q`)", ("q",)),
        ("Query(`q`, `v`)", ("q", "v")),
        ("QueryRegexp(`q`)", ("q",)),
        ("QueryRegexp(`q`, `^v$`)", ("q", "^v$")),
        ("Header(`X-A`, `b`)", ("X-A", "b")),
        ("Header(`X-A`, `b`,)", ("X-A", "b")),  # Go allows a trailing comma in a call
        ("Host(\n`a`\n)", ("a",)),
    ],
)
def test_arguments(rule: str, args: tuple[str, ...]) -> None:
    node = parse_rule(rule)
    assert isinstance(node, Matcher)
    assert node.args == args


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("Host()", "Host takes 1 argument, got 0"),
        ("Host(`a`, `b`)", "Host takes 1 argument, got 2"),
        ("Header(`X-A`)", "Header takes 2 arguments, got 1"),
        ("HeaderRegexp(`a`, `b`, `c`)", "HeaderRegexp takes 2 arguments, got 3"),
        ("Query()", "Query takes 1 or 2 arguments, got 0"),
        ("Query(`a`, `b`, `c`)", "Query takes 1 or 2 arguments, got 3"),
        ("ClientIP(`1.2.3.4`, `::1`)", "ClientIP takes 1 argument, got 2"),
        ("PathPrefix(`/css`, `/js`)", "PathPrefix takes 1 argument, got 2"),
    ],
)
def test_arity_is_checked_like_traefik(rule: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    assert message in str(info.value)
    assert info.value.column == 1


@pytest.mark.parametrize(
    ("rule", "column"),
    [("Host(``)", 6), ("Header(`X`, ``)", 13), ("Query(``, `v`)", 7), ('Path("")', 6)],
)
def test_empty_arguments_are_refused(rule: str, column: int) -> None:
    with pytest.raises(RuleError, match="empty argument") as info:
        parse_rule(rule)
    assert info.value.column == column


# --- Go string literals ------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("`a\\d+\\n`", "a\\d+\\n"),  # raw: backslashes are literal
        ("`line1\nline2`", "line1\nline2"),
        ("`a\r\nb`", "a\nb"),  # Go drops \r from raw strings
        ('"plain"', "plain"),
        ('"a\\"b"', 'a"b'),
        ('"tab\\tnl\\ncr\\rbs\\\\"', "tab\tnl\ncr\rbs\\"),
        ('"\\a\\b\\f\\v"', "\a\b\f\v"),
        ('"\\x41\\101\\u00e9\\U0001F600"', "AAé\U0001f600"),
        ('"\\xc3\\xa9"', "é"),  # bytes that form UTF-8
        ('"`"', "`"),
        ('"\\\\d+"', "\\d+"),
        ('"é"', "é"),
    ],
)
def test_string_literals(literal: str, value: str) -> None:
    node = parse_rule(f"Header(`X`, {literal})")
    assert isinstance(node, Matcher)
    assert node.args[1] == value


def test_invalid_utf8_bytes_survive_as_surrogates() -> None:
    node = parse_rule('Header(`X`, "\\xff")')
    assert isinstance(node, Matcher)
    assert node.args[1].encode("utf-8", "surrogateescape") == b"\xff"


@pytest.mark.parametrize(
    ("rule", "column", "message"),
    [
        ('Host("a\\qb")', 8, "unknown escape sequence \\q"),
        ('Host("a\\\'b")', 8, "unknown escape sequence \\'"),
        ('Host("\\x4")', 7, "expected 2 hexadecimal digits"),
        ('Host("\\u12")', 7, "expected 4 hexadecimal digits"),
        ('Host("\\uD800")', 7, "not a valid Unicode code point"),
        ('Host("\\U00110000")', 7, "not a valid Unicode code point"),
        ('Host("\\400")', 7, "> 255"),
        ('Host("\\12")', 7, "expected 3 octal digits"),
        ('Host("abc', 6, "unterminated string"),
        ('Host("a\nb")', 6, "newline in string"),
        ("Host(`abc", 6, "unterminated raw string"),
        ("Host('a')", 6, "single quotes are not allowed"),
    ],
)
def test_string_errors(rule: str, column: int, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    assert info.value.column == column
    assert message in info.value.message


# --- syntax errors name the column and what was expected ---------------------


@pytest.mark.parametrize(
    ("rule", "column", "expected"),
    [
        ("", 1, "empty rule"),
        ("   ", 1, "empty rule"),
        ("Host(`a`", 9, "expected ',' or ')', found end of rule"),
        ("Host(`a` `b`)", 10, "expected ',' or ')', found a string"),
        ("(Host(`a`) && Path(`/`)", 24, "expected ')' to close '(' at column 1, found end of rule"),
        ("Host(`a`))", 10, "expected '&&', '||' or end of rule, found ')'"),
        ("Host(`a`) Path(`/`)", 11, "expected '&&', '||' or end of rule, found name 'Path'"),
        ("Host(`a`) && ", 14, "expected a matcher, '!' or '(', found end of rule"),
        ("Host(`a`) && || Path(`/`)", 14, "expected a matcher, '!' or '(', found '||'"),
        ("Host(`a`) & Path(`/`)", 11, "unexpected character '&': expected '&&'"),
        ("Host(`a`) | Path(`/`)", 11, "unexpected character '|': expected '||'"),
        ("Host(`a`) and Path(`/`)", 11, "expected '&&', '||' or end of rule, found name 'and'"),
        ("Host `a`", 6, "expected '(' after Host, found a string"),
        ("Host", 5, "expected '(' after Host, found end of rule"),
        ("Host(1)", 6, "unexpected character '1'"),
        ("Host(a)", 6, "expected a string in backticks or double quotes or ')', found name 'a'"),
        ("Host(`a`,,)", 10, "expected a string in backticks or double quotes, found ','"),
        ("`a`", 1, "expected a matcher, '!' or '(', found a string"),
        ("Hots(`a`)", 1, "unknown matcher 'Hots'"),
        ("Host(`a`) && Hedaer(`a`, `b`)", 14, "unknown matcher 'Hedaer'"),
        ("Host(`a`) == Host(`b`)", 11, "unexpected character '='"),
        ("Host(`a`) != Host(`b`)", 11, "expected '&&', '||' or end of rule, found '!'"),
        ("Host(`a`) && Path(`/`) @", 24, "unexpected character '@'"),
    ],
)
def test_syntax_errors_name_column_and_expectation(rule: str, column: int, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    err = info.value
    assert err.column == column
    assert expected in err.message
    assert str(err).startswith(f"rule: column {column}: ")
    assert "\n" not in str(err)
    assert err.router is None


def test_error_message_format_from_the_brief() -> None:
    with pytest.raises(RuleError) as info:
        parse_rule("Host(`a.b`) && (Path(`/`)")
    assert str(info.value) == (
        "rule: column 26: expected ')' to close '(' at column 16, found end of rule"
    )


def test_rule_error_with_router_is_one_line() -> None:
    err = RuleError("bad\nthing", column=3).with_router("web@file", "Host(`a`)\n")
    assert str(err) == "router 'web@file': rule: column 3: bad thing"
    assert err.router == "web@file"
    assert err.column == 3
    assert err.rule == "Host(`a`)\n"


def test_nesting_depth_is_bounded() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "Host(`a`)" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(RuleError, match="nests deeper"):
        parse_rule(deep)
    ok = "(" * 50 + "!" * 50 + "Host(`a`)" + ")" * 50
    assert shape(parse_rule(ok)) == A


def test_long_flat_rules_do_not_recurse() -> None:
    rule = " || ".join(f"Host(`h{i}.example.com`)" for i in range(5000))
    node = parse_rule(rule)
    assert isinstance(node, Or)
    assert len(node.children) == 5000
    assert shape(negate(node))[0] == "and"


# --- another registry (the TCP rule language, later) -------------------------


def test_another_registry_needs_no_parser_change() -> None:
    def build(args: tuple[str, ...]):
        return lambda conn: conn == args[0]

    tcp = Parser(
        {
            "HostSNI": MatcherDef((1,), build),
            "HostSNIRegexp": MatcherDef((1,), build),
            "ClientIP": MatcherDef((1,), build),
            "ALPN": MatcherDef((1,), build),
        }
    )
    node = tcp.parse("hostsni(`a.com`) && !ALPN(`h2`)")
    assert shape(node) == ("and", (("HostSNI", ("a.com",)), ("!ALPN", ("h2",))))
    with pytest.raises(RuleError, match="unknown matcher 'Host'"):
        tcp.parse("Host(`a`)")
    with pytest.raises(RuleError, match="HostSNI takes 1 argument, got 2"):
        tcp.parse("HostSNI(`a`, `b`)")


def test_columns_of_matchers_are_kept() -> None:
    node = parse_rule("Host(`a`) && !Path(`/b`)")
    assert isinstance(node, And)
    assert [child.column for child in node.children if isinstance(child, Matcher)] == [1, 15]
