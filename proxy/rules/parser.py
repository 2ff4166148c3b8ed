"""Traefik v3 rule text -> tree.

Theory of operation
-------------------
Traefik parses a rule as a Go expression (vulcand/predicate over go/parser), so
the grammar here is the subset of Go expressions that predicate accepts::

    rule    := or
    or      := and ('||' and)*          # '&&' binds tighter than '||', as in Go
    and     := unary ('&&' unary)*
    unary   := '!' unary | primary
    primary := '(' or ')' | NAME '(' [STRING (',' STRING)* [',']] ')'

STRING is a Go string literal: a raw string in backticks (no escapes, carriage
returns dropped) or an interpreted string in double quotes (Go escapes).

The tree has three node kinds, `Matcher` (a leaf that may be negated), `And` and
`Or`. Negation is pushed down to the leaves while parsing (De Morgan, as
Traefik's `invert`), and nested And/Or of the same kind are flattened, so the
compiler and the index never see a `Not` node.

Matcher names and arities come from a registry (name -> `MatcherDef`), so the
TCP rule language (HostSNI, HostSNIRegexp, ClientIP, ALPN) is another registry
given to another `Parser`, not another branch here. Names match in any letter
case. Arity and empty arguments are checked here, as Traefik's
`expectNParameters` and `CheckRule` do; what a value means (a regexp, a CIDR,
a path) is checked by the matcher's builder when the tree is compiled.

Every error is a `RuleError` carrying the 1-based column (in characters) of
the offending token and saying what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "And",
    "Matcher",
    "MatcherDef",
    "Node",
    "Or",
    "Parser",
    "RuleError",
    "negate",
    "render",
]

# Deeper nesting than this is refused instead of exhausting Python's stack.
MAX_DEPTH = 200


class RuleError(ValueError):
    """A rule that cannot be parsed or compiled.

    `str()` is one line: ``router "web@file": rule: column 12: expected ')' ...``.
    """

    def __init__(
        self,
        message: str,
        *,
        column: int | None = None,
        router: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.message = " ".join(message.split())  # one line, whatever the cause said
        self.column = column
        self.router = router
        self.rule = rule
        super().__init__(str(self))

    def with_router(self, router: str, rule: str | None = None) -> RuleError:
        return RuleError(
            self.message,
            column=self.column,
            router=router,
            rule=rule if rule is not None else self.rule,
        )

    def __str__(self) -> str:
        where = f"router {self.router!r}: " if self.router is not None else ""
        column = f"column {self.column}: " if self.column is not None else ""
        return f"{where}rule: {column}{self.message}"


class MatcherDef(NamedTuple):
    """One entry of a matcher registry: the argument counts accepted, and the builder
    that turns the arguments into a predicate (called by the compiler, not here)."""

    arity: tuple[int, ...]
    build: Callable[[tuple[str, ...]], Any]


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str  # as spelled in the registry, whatever the rule's letter case
    args: tuple[str, ...]
    negated: bool = False
    column: int = 0  # 1-based column of the name in the rule text


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Matcher | And | Or


def negate(node: Node) -> Node:
    """The negation of `node` with `!` pushed onto the leaves (De Morgan)."""
    if isinstance(node, Matcher):
        return Matcher(node.name, node.args, not node.negated, node.column)
    if isinstance(node, And):
        return _or([negate(child) for child in node.children])
    return _and([negate(child) for child in node.children])


def _and(children: list[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, And) else (child,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(children: list[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, Or) else (child,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def render(node: Node) -> str:
    """The canonical rule text of a tree (backticked arguments, minimal parentheses)."""
    if isinstance(node, Matcher):
        args = ", ".join(_quote(arg) for arg in node.args)
        return f"{'!' if node.negated else ''}{node.name}({args})"
    if isinstance(node, And):
        return " && ".join(
            f"({render(c)})" if isinstance(c, Or) else render(c) for c in node.children
        )
    return " || ".join(render(c) for c in node.children)


def _quote(arg: str) -> str:
    if "`" not in arg and "\r" not in arg:
        return f"`{arg}`"
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


# --- tokens -----------------------------------------------------------------

_NAME, _STRING, _LPAREN, _RPAREN, _COMMA, _AND, _OR, _NOT, _END = (
    "name",
    "string",
    "'('",
    "')'",
    "','",
    "'&&'",
    "'||'",
    "'!'",
    "end of rule",
)

_PUNCT = {"(": _LPAREN, ")": _RPAREN, ",": _COMMA, "!": _NOT}
_WHITESPACE = frozenset(" \t\n\r")
# Build-time scanning only (never on a request): Python's re is fine for these.
_SPACES = re.compile(r"[ \t\n\r]+")
_NAME = re.compile(r"[^\W\d]\w*")  # a Go identifier: a letter or '_', then letters/digits
_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
}
_HEX = frozenset("0123456789abcdefABCDEF")


class _Token(NamedTuple):
    kind: str
    value: str
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind == _NAME:
            return f"name {self.value!r}"
        if self.kind == _STRING:
            return "a string"
        return self.kind


def _tokenize(text: str) -> Iterator[_Token]:
    """Tokens on demand, so an error is reported where parsing reaches it first."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i = _SPACES.match(text, i).end()  # type: ignore[union-attr]
        elif ch in _PUNCT:
            yield _Token(_PUNCT[ch], ch, i + 1)
            i += 1
        elif ch in "&|":
            if text.startswith(ch * 2, i):
                yield _Token(_AND if ch == "&" else _OR, ch * 2, i + 1)
                i += 2
            else:
                raise RuleError(f"unexpected character {ch!r}: expected {ch * 2!r}", column=i + 1)
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise RuleError("unterminated raw string: expected a closing '`'", column=i + 1)
            # Go drops carriage returns from raw string literals.
            yield _Token(_STRING, text[i + 1 : end].replace("\r", ""), i + 1)
            i = end + 1
        elif ch == '"':
            value, end = _scan_interpreted(text, i)
            yield _Token(_STRING, value, i + 1)
            i = end
        elif ch == "'":
            raise RuleError(
                "single quotes are not allowed: put values in backticks or double quotes",
                column=i + 1,
            )
        elif (name := _NAME.match(text, i)) is not None:
            yield _Token(_NAME, name.group(), i + 1)
            i = name.end()
        else:
            raise RuleError(f"unexpected character {ch!r}", column=i + 1)
    yield _Token(_END, "", n + 1)


# The common rule shapes (names, punctuation, backtick strings) in one regex;
# anything else (double quotes, errors) goes through the full tokenizer.
_FAST_TOKEN = re.compile(r"[ \t\n\r]*(?:([(),!])|(&&)|(\|\|)|`([^`\r]*)`|([^\W\d]\w*))")


def _tokenize_fast(text: str) -> list[_Token] | None:
    """All tokens of a rule made only of the common shapes, else None.

    Building a 10,000-router table parses 10,000 rules: one regex step per token
    is about twice as fast as the character loop of ``_tokenize``, which stays
    the reference (and the source of every error message).
    """
    tokens: list[_Token] = []
    match = _FAST_TOKEN.match
    position = 0
    while (found := match(text, position)) is not None:
        punct, both, either, raw, name = found.groups()
        if punct is not None:
            tokens.append(_Token(_PUNCT[punct], punct, found.start(1) + 1))
        elif both is not None:
            tokens.append(_Token(_AND, both, found.start(2) + 1))
        elif either is not None:
            tokens.append(_Token(_OR, either, found.start(3) + 1))
        elif raw is not None:
            tokens.append(_Token(_STRING, raw, found.start(4)))
        else:
            tokens.append(_Token(_NAME, name, found.start(5) + 1))
        position = found.end()
    if text[position:].strip(" \t\n\r"):
        return None
    tokens.append(_Token(_END, "", len(text) + 1))
    return tokens


def _scan_interpreted(text: str, start: int) -> tuple[str, int]:
    """Scan the Go interpreted string literal opening at `start`.

    Returns the value and the index just past the closing quote. Escapes that
    make bytes (octal, \\x) are assembled as bytes and decoded as UTF-8 with
    surrogateescape, as Go strings are byte strings.
    """
    end = text.find('"', start + 1)
    if end >= 0 and "\\" not in text[start + 1 : end] and "\n" not in text[start + 1 : end]:
        return text[start + 1 : end], end + 1  # nothing to unescape
    out = bytearray()
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise RuleError("unterminated string: expected a closing '\"'", column=start + 1)
        ch = text[i]
        if ch == '"':
            return out.decode("utf-8", "surrogateescape"), i + 1
        if ch == "\n":
            raise RuleError(
                "newline in string: expected a closing '\"' (use backticks for multi-line values)",
                column=start + 1,
            )
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        column = i + 1
        if i + 1 >= n:
            raise RuleError("unterminated string: expected a closing '\"'", column=start + 1)
        esc = text[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc]
            i += 2
        elif esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) < 3 or any(d not in "01234567" for d in digits):
                raise RuleError("invalid octal escape: expected 3 octal digits", column=column)
            value = int(digits, 8)
            if value > 255:
                raise RuleError(f"octal escape value \\{digits} > 255", column=column)
            out.append(value)
            i += 4
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) < width or any(d not in _HEX for d in digits):
                raise RuleError(
                    f"invalid \\{esc} escape: expected {width} hexadecimal digits", column=column
                )
            value = int(digits, 16)
            if esc == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise RuleError(
                    f"escape \\{esc}{digits} is not a valid Unicode code point", column=column
                )
            else:
                out += chr(value).encode("utf-8")
            i += 2 + width
        else:
            raise RuleError(f"unknown escape sequence \\{esc} in string", column=column)


# --- parser -----------------------------------------------------------------


class Parser:
    """Parses rule text against one matcher registry (HTTP, or later TCP)."""

    def __init__(self, registry: Mapping[str, MatcherDef]) -> None:
        self.registry = dict(registry)
        self._by_lower = {name.lower(): name for name in registry}
        self._known = ", ".join(sorted(registry))

    def parse(self, text: str) -> Node:
        fast = _tokenize_fast(text)
        return _ParseRun(self, iter(fast) if fast is not None else _tokenize(text)).rule()


class _ParseRun:
    __slots__ = ("current", "depth", "parser", "tokens")

    def __init__(self, parser: Parser, tokens: Iterator[_Token]) -> None:
        self.parser = parser
        self.tokens = tokens
        self.current = next(tokens)
        self.depth = 0

    def peek(self) -> _Token:
        return self.current

    def take(self) -> _Token:
        token = self.current
        if token.kind != _END:
            self.current = next(self.tokens)
        return token

    def fail(self, expected: str, token: _Token) -> RuleError:
        return RuleError(f"expected {expected}, found {token.describe()}", column=token.column)

    def rule(self) -> Node:
        if self.peek().kind == _END:
            raise RuleError("empty rule: expected a matcher such as Host(`example.com`)", column=1)
        node = self.or_expr()
        token = self.peek()
        if token.kind != _END:
            raise self.fail("'&&', '||' or end of rule", token)
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.peek().kind == _OR:
            self.take()
            children.append(self.and_expr())
        return _or(children)

    def and_expr(self) -> Node:
        children = [self.unary()]
        while self.peek().kind == _AND:
            self.take()
            children.append(self.unary())
        return _and(children)

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == _NOT:
            self.take()
            self.enter(token)
            node = negate(self.unary())
            self.depth -= 1
            return node
        if token.kind == _LPAREN:
            self.take()
            self.enter(token)
            node = self.or_expr()
            closing = self.peek()
            if closing.kind != _RPAREN:
                raise self.fail(f"')' to close '(' at column {token.column}", closing)
            self.take()
            self.depth -= 1
            return node
        if token.kind == _NAME:
            return self.matcher()
        raise self.fail("a matcher, '!' or '('", token)

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(f"rule nests deeper than {MAX_DEPTH} levels", column=token.column)

    def matcher(self) -> Node:
        name_token = self.take()
        name = self.parser._by_lower.get(name_token.value.lower())
        if name is None:
            raise RuleError(
                f"unknown matcher {name_token.value!r}: expected one of {self.parser._known}",
                column=name_token.column,
            )
        token = self.take()
        if token.kind != _LPAREN:
            raise self.fail(f"'(' after {name}", token)
        args: list[_Token] = []
        while True:
            token = self.take()
            if token.kind == _RPAREN:
                break
            if token.kind != _STRING:
                expected = "a string in backticks or double quotes"
                raise self.fail(expected if args else f"{expected} or ')'", token)
            args.append(token)
            token = self.take()
            if token.kind == _RPAREN:
                break
            if token.kind != _COMMA:
                raise self.fail("',' or ')'", token)
        arity = self.parser.registry[name].arity
        if len(args) not in arity:
            counts = " or ".join(str(a) for a in arity)
            plural = "" if arity == (1,) else "s"
            raise RuleError(
                f"{name} takes {counts} argument{plural}, got {len(args)}",
                column=name_token.column,
            )
        for arg in args:
            if not arg.value:
                raise RuleError(f"empty argument for {name}", column=arg.column)
        return Matcher(name, tuple(a.value for a in args), False, name_token.column)
