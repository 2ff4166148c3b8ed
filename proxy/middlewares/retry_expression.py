"""buffering's ``retryExpression``: oxy's retry predicate, parsed once into a closure.

The language is the subset of Go expressions vulcand/predicate accepts with
oxy's buffer definitions: the functions ``IsNetworkError()`` (the last try got
a 502 or a 504), ``Attempts()`` (tries made so far, from 1), ``ResponseCode()``
(the last try's status) and ``RequestMethod()``; integer and string literals;
``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=``; ``&&``, ``||`` and parentheses,
with Go's precedence (comparisons, then ``&&``, then ``||``). Example:
``IsNetworkError() && Attempts() < 2``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

# Go's ordering of a string or an int with another of its kind.
COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|<|>|\(|\))|(?P<int>\d+)|(?P<str>\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<name>[A-Za-z_]\w*))"
)


@dataclass(slots=True)
class Attempt:
    """What the predicate reads about the try that just ended."""

    method: str
    attempts: int
    status: int


Value = Callable[[Attempt], object]
Predicate = Callable[[Attempt], bool]

FUNCTIONS: dict[str, tuple[str, Value]] = {
    "IsNetworkError": ("bool", lambda a: a.status in (502, 504)),
    "Attempts": ("int", lambda a: a.attempts),
    "ResponseCode": ("int", lambda a: a.status),
    "RequestMethod": ("str", lambda a: a.method),
}


class ExpressionError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"unexpected {text[position:].strip()[:20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of expression")
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        _kind, value = self.take()
        if value != text:
            raise ExpressionError(f"expected {text!r}, got {value!r}")

    def disjunction(self) -> Predicate:
        left = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.comparison()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.comparison()
            left = _and(left, right)
        return left

    def comparison(self) -> Predicate:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        left_type, left = self.operand()
        token = self.peek()
        if token is None or token[1] not in COMPARISONS:
            if left_type != "bool":
                raise ExpressionError("expected a comparison")
            return left  # type: ignore[return-value]
        self.take()
        right_type, right = self.operand()
        if left_type != right_type or left_type == "bool":
            raise ExpressionError(f"cannot compare {left_type} with {right_type}")
        return _compare(COMPARISONS[token[1]], left, right)

    def operand(self) -> tuple[str, Value]:
        kind, text = self.take()
        if kind == "int":
            number = int(text)
            return "int", lambda _: number
        if kind == "str":
            string = text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
            return "str", lambda _: string
        if kind == "name":
            if text not in FUNCTIONS:
                raise ExpressionError(f"unsupported function {text!r}")
            self.expect("(")
            self.expect(")")
            return FUNCTIONS[text]
        raise ExpressionError(f"unexpected {text!r}")


def _or(left: Predicate, right: Predicate) -> Predicate:
    return lambda attempt: left(attempt) or right(attempt)


def _and(left: Predicate, right: Predicate) -> Predicate:
    return lambda attempt: left(attempt) and right(attempt)


def _compare(compare: Callable[[object, object], bool], left: Value, right: Value) -> Predicate:
    return lambda attempt: compare(left(attempt), right(attempt))


def parse(text: str) -> Predicate:
    """The predicate of ``text``; ExpressionError says what is wrong."""
    parser = _Parser(tokenize(text))
    if not parser.tokens:
        raise ExpressionError("empty expression")
    predicate = parser.disjunction()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return predicate
