"""encodedCharacters: refuse request paths holding ambiguous encoded characters (Traefik v3.7).

A backend that decodes ``%2F`` into ``/`` (or ``%00`` into a string end, ``%5C``
into a Windows separator) sees another path than the one Turnout routed on:
a split view that rule-based access control cannot survive. By default every
such character is refused with a 400 and an empty body, as Traefik does; each
``allowEncoded*`` option lets one through:

======================  ================
option                  encoded forms
======================  ================
allowEncodedSlash       %2F %2f
allowEncodedBackSlash   %5C %5c
allowEncodedNullCharacter  %00
allowEncodedSemicolon   %3B %3b
allowEncodedPercent     %25
allowEncodedQuestionMark  %3F %3f
allowEncodedHash        %23
======================  ================

Only the path is read (the query may hold anything), as the request reaches
this middleware (after any rewrite by the middlewares before it). As in
Traefik's scan, each ``%`` starts a three-byte token, and a ``%`` without two
bytes after it is refused too.

The entry point option ``entryPoints.N.http.encodedCharacters`` (static, the
same ``allowEncoded*`` options, each true by default) is the same check:
Traefik puts it on every router of the entry point, after the router matched
and before its middlewares (``entry_point_check``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config import static
from proxy.config.dynamic import EncodedCharacters
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

# Each option and the tokens it allows, in Traefik's order.
TOKENS: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("allow_encoded_slash", (b"%2F", b"%2f")),
    ("allow_encoded_back_slash", (b"%5C", b"%5c")),
    ("allow_encoded_null_character", (b"%00",)),
    ("allow_encoded_semicolon", (b"%3B", b"%3b")),
    ("allow_encoded_percent", (b"%25",)),
    ("allow_encoded_question_mark", (b"%3F", b"%3f")),
    ("allow_encoded_hash", (b"%23",)),
)


def denied_tokens(config: EncodedCharacters | static.EncodedCharacters) -> frozenset[bytes]:
    return frozenset(
        token for option, tokens in TOKENS if not getattr(config, option) for token in tokens
    )


def first_denied(path: bytes, denied: frozenset[bytes]) -> bytes | None:
    """The first refused token of ``path`` (``b"%"`` for a truncated one), or None."""
    index = path.find(b"%")
    size = len(path)
    while index >= 0:
        if index + 2 >= size:
            return b"%"
        token = path[index : index + 3]
        if token in denied:
            return token
        index = path.find(b"%", index + 3)
    return None


class EncodedCharactersHandler(Handler):
    __slots__ = ("denied",)

    def __init__(self, name: str, denied: frozenset[bytes]) -> None:
        super().__init__(name)
        self.denied = denied

    def on_request(self, ex: Exchange) -> Answer | None:
        path = ex.raw_path
        if b"%" not in path:
            return None  # most paths: one scan in C
        if first_denied(path, self.denied) is None:
            return None
        return Answer(400)  # Traefik writes the status alone, no body


class Allowing(Handler):
    """Every option set to true: nothing to check, and no hook for the chain to call."""

    __slots__ = ()


@register("encoded_characters")
def build(name: str, config: EncodedCharacters, context: BuildContext) -> Handler:
    denied = denied_tokens(config)
    if not denied:
        return Allowing(name)
    return EncodedCharactersHandler(name, denied)


# Built once per entry point and setting: the static configuration does not
# change while the process runs, and the same handler in every snapshot lets an
# unchanged router keep its compiled chain and routing table across reloads.
_ENTRY_POINT_CHECKS: dict[tuple[str, frozenset[bytes]], EncodedCharactersHandler] = {}


def entry_point_check(entrypoint: str, config: static.EncodedCharacters) -> Handler | None:
    """The check ``entryPoints.<entrypoint>.http.encodedCharacters`` asks of its routers.

    None when it allows every encoded character (the default): nothing to run.
    """
    denied = denied_tokens(config)
    if not denied:
        return None
    key = (entrypoint, denied)
    check = _ENTRY_POINT_CHECKS.get(key)
    if check is None:
        check = EncodedCharactersHandler(f"entryPoints.{entrypoint}.http.encodedCharacters", denied)
        _ENTRY_POINT_CHECKS[key] = check
    return check
