"""Go regexps on RE2: linear time, Go's syntax and MatchString semantics, clear errors."""

from __future__ import annotations

import time

import pytest

from proxy.rules import RuleError, SimpleRequest, compile_rule
from proxy.rules.regex import RegexpError, compile_go


def test_no_catastrophic_backtracking() -> None:
    search = compile_go("(a+)+$")
    text = "a" * 100_000 + "b"
    started = time.perf_counter()
    assert search(text) is False  # `$` is end of text: the trailing b spoils every match
    assert search("a" * 100_000) is True
    # Python's backtracking `re` would not finish this before the heat death of the
    # universe; RE2 takes milliseconds. The bound only catches a backtracking engine.
    assert time.perf_counter() - started < 5


def test_catastrophic_pattern_in_a_rule() -> None:
    rule = compile_rule("PathRegexp(`^/(a+)+$`)")
    assert not rule(SimpleRequest(path="/" + "a" * 100_000 + "b"))
    assert rule(SimpleRequest(path="/aaa"))


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("b", "abc", True),  # MatchString is an unanchored search
        ("^b", "abc", False),
        ("c$", "abc", True),
        ("^a$", "a\n", False),  # Go's $ is end of text (Python's re would say True)
        ("(?m)^a$", "a\nb", True),
        (r"\d+", "x42", True),
        (r"^\p{Greek}+$", "αβγ", True),
        ("^.$", "é", True),  # UTF-8 aware: one code point
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
        (r"\Q\C\E", "\\C", True),  # literal inside \Q...\E
        ("(?i)ABC", "xabcx", True),
        ("(?U)a+", "aaa", True),
        ("(?P<name>x)|(?<other>y)", "y", True),
        ("[[:alpha:]]+", "abc", True),
        ("a|ab", "ab", True),
        ("", "", True),
    ],
)
def test_go_semantics(pattern: str, text: str, expected: bool) -> None:
    assert compile_go(pattern)(text) is expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(abc", "missing )"),
        ("abc)", "unexpected )"),
        ("a**", "bad repetition operator"),
        ("x*+", "bad repetition operator"),
        ("a{1001}", "invalid repetition size"),
        ("(?=a)", "invalid perl operator"),
        ("(?<!a)b", "invalid"),
        (r"(a)\1", "invalid escape sequence"),
        (r"\Z", "invalid escape sequence"),
        (r"\C", "invalid escape sequence"),  # RE2 has it, Go does not
        ("[z-a]", "invalid character class range"),
        ("\udcff", "invalid UTF-8"),
    ],
)
def test_invalid_regexps(pattern: str, reason: str) -> None:
    with pytest.raises(RegexpError) as info:
        compile_go(pattern)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("rule", "matcher", "pattern"),
    [
        ("HostRegexp(`(example`)", "HostRegexp", "(example"),
        ("PathRegexp(`[`)", "PathRegexp", "["),
        ("HeaderRegexp(`X`, `a**`)", "HeaderRegexp", "a**"),
        ("QueryRegexp(`q`, `(traefik`)", "QueryRegexp", "(traefik"),
    ],
)
def test_invalid_regexp_in_a_rule_names_it(rule: str, matcher: str, pattern: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule(f"Host(`a.com`) && {rule}")
    message = str(info.value)
    assert info.value.column == 18
    assert matcher in message
    assert repr(pattern) in message
    assert "\n" not in message


def test_invalid_utf8_pattern_from_a_go_escape() -> None:
    with pytest.raises(RuleError, match="invalid UTF-8"):
        compile_rule('PathRegexp("\\xff")')


def test_errors_are_not_printed(capfd) -> None:
    with pytest.raises(RegexpError):
        compile_go("(unbalanced")
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_text_with_raw_bytes_matches_on_its_bytes() -> None:
    # The engine may decode a non-UTF-8 path with surrogateescape; the regexp sees the
    # original bytes (as Go, whose strings are bytes) and does not crash.
    raw = b"/caf\xe9".decode("utf-8", "surrogateescape")
    assert compile_go("^/caf")(raw)
    assert not compile_go("^/café$")(raw)
