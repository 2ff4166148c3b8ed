"""replacePathRegex: rewrite the path with a regexp (Traefik's replacepathregex).

As Traefik: the regexp runs on the escaped path as it came on the wire; on a
match, the original goes upstream in X-Replaced-Path, the replacement (a Go
template, ``$1``) becomes the new escaped path and its unescaped form the path.
An empty replacement leaves requests alone; a result that cannot be unescaped
is a 500, as Go's ``url.PathUnescape`` error is in Traefik.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from proxy.config.dynamic import ReplacePathRegex
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler
from proxy.middlewares.goregexp import GoRegexp, RegexpError

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

# A "%" not followed by two hex digits: url.PathUnescape refuses it.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class ReplacePathRegexHandler(Handler):
    __slots__ = ("pieces", "regexp")

    def __init__(self, name: str, regexp: GoRegexp, replacement: str) -> None:
        super().__init__(name)
        self.regexp = regexp
        self.pieces = regexp.template(replacement)

    def on_request(self, ex: Exchange) -> Answer | None:
        current = ex.raw_path.decode("utf-8", "surrogateescape")
        if not self.regexp.search(current):
            return None
        ex.add_header("X-Replaced-Path", current)
        raw = self.regexp.replace_all(current, self.pieces).encode("utf-8", "surrogateescape")
        if _BAD_ESCAPE.search(raw):
            return Answer(
                500, [(b"Content-Type", b"text/plain; charset=utf-8")], b"invalid URL escape\n"
            )
        try:
            ex.set_path(unquote_to_bytes(raw).decode("utf-8", "surrogateescape"), raw)
        except ValueError:
            return Answer(500, [(b"Content-Type", b"text/plain; charset=utf-8")], b"invalid path\n")
        return None


@register("replace_path_regex")
def build(name: str, config: ReplacePathRegex, context: BuildContext) -> Handler:
    pattern = config.regex.strip()
    try:
        regexp = GoRegexp(pattern)
    except RegexpError as error:
        raise BuildError(
            f"error compiling regular expression {pattern!r}: {error}", "regex"
        ) from None
    if not config.replacement:
        return Handler(name)  # Traefik's handler does nothing without a replacement
    return ReplacePathRegexHandler(name, regexp, config.replacement)
