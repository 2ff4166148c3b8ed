"""stripPrefixRegex: strip the first prefix a regexp matches (Traefik's stripprefixregex).

Each regexp runs on the (unescaped) path in order; the first non-empty match
that is a prefix of the path is removed, goes upstream in X-Forwarded-Prefix,
and the path left always starts with "/".
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from proxy.config.dynamic import StripPrefixRegex
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler
from proxy.middlewares.goregexp import GoRegexp, RegexpError

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange


def _leading_slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class StripPrefixRegexHandler(Handler):
    __slots__ = ("expressions",)

    def __init__(self, name: str, expressions: tuple[GoRegexp, ...]) -> None:
        super().__init__(name)
        self.expressions = expressions

    def on_request(self, ex: Exchange) -> None:
        path = ex.path
        for expression in self.expressions:
            found = expression.submatch(path)
            if not found or not found[0]:
                continue
            prefix = found[0]
            if not path.startswith(prefix):
                continue
            ex.add_header("X-Forwarded-Prefix", prefix)
            rest = _leading_slash(path[len(prefix) :])
            cut = _escaped_length(ex.raw_path, prefix.encode("utf-8", "surrogateescape"))
            if cut is None:
                ex.set_path(rest)
            else:
                # Keep the client's escaping of what is left.
                ex.set_path(rest, _leading_slash_raw(ex.raw_path[cut:]))
            return


def _escaped_length(raw: bytes, prefix: bytes) -> int | None:
    """How many bytes of the escaped path spell ``prefix`` once unescaped (None: unescaped)."""
    if b"%" not in raw:
        return None
    for cut in range(len(prefix), len(raw) + 1):
        if unquote_to_bytes(raw[:cut]) == prefix:
            return cut
    return None


def _leading_slash_raw(raw: bytes) -> bytes:
    return raw if raw.startswith(b"/") else b"/" + raw


@register("strip_prefix_regex")
def build(name: str, config: StripPrefixRegex, context: BuildContext) -> Handler:
    expressions = []
    for index, pattern in enumerate(config.regex):
        try:
            expressions.append(GoRegexp(pattern.strip()))
        except RegexpError as error:
            raise BuildError(f"invalid regexp {pattern!r}: {error}", f"regex[{index}]") from None
    return StripPrefixRegexHandler(name, tuple(expressions))
