"""Go regexps (RE2 syntax) on google-re2: linear time, Go's `MatchString` semantics.

Go's `regexp` and RE2 share syntax and leftmost-first semantics; the gaps that
matter for rules are closed here:

- `\\C` (any byte) is RE2-only; Go refuses it, so do we.
- Go strings are bytes: text and pattern are encoded as UTF-8 with
  surrogateescape, so a value decoded that way by the engine matches on its
  original bytes, and a pattern that is not valid UTF-8 is refused (as Go does).
- `MatchString` is an unanchored search; a pattern anchors itself with `^`/`$`,
  which in RE2 (as in Go) mean start/end of text unless `(?m)`.

Matching goes through the compiled `_re2.RE2` object directly: the public
`re2.search` wraps every call in a generator and offset maps, 7.7 µs against
1.4 µs here for a short path.
"""

from __future__ import annotations

from collections.abc import Callable

import re2

__all__ = ["RegexpError", "compile_go"]


class RegexpError(ValueError):
    pass


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are raised as RegexpError, not printed to stderr
    options.never_capture = True  # only "does it match" is asked
    return options


_OPTIONS = _options()


def _check_go_only(pattern: str) -> None:
    """Refuse what RE2 accepts but Go's regexp/syntax does not."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch != "\\":
            i += 1
            continue
        nxt = pattern[i + 1 : i + 2]
        if nxt == "Q":  # \Q...\E is literal text: nothing inside is an escape
            end = pattern.find("\\E", i + 2)
            if end < 0:
                return
            i = end + 2
            continue
        if nxt == "C":
            raise RegexpError("invalid escape sequence: `\\C`")
        i += 2


def compile_go(pattern: str) -> Callable[[str], bool]:
    """Compile a Go regexp; return `text -> bool`, true when it matches anywhere in text.

    Raises `RegexpError` with RE2's (Go-like) reason on an invalid pattern.
    """
    try:
        encoded = pattern.encode("utf-8", "surrogateescape")
        encoded.decode("utf-8")
    except UnicodeError:
        raise RegexpError("invalid UTF-8") from None
    _check_go_only(pattern)
    try:
        compiled = re2.compile(encoded, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid regexp"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexpError(str(reason)) from None

    raw = getattr(compiled, "_regexp", None)
    if raw is None or not hasattr(raw, "Match"):  # pragma: no cover - other google-re2 layout

        def search_public(text: str) -> bool:
            return compiled.search(text.encode("utf-8", "surrogateescape")) is not None

        return search_public

    unanchored = raw.Anchor.UNANCHORED
    match = raw.Match

    def search(text: str) -> bool:
        data = text.encode("utf-8", "surrogateescape")
        return match(unanchored, data, 0, len(data))[0][0] >= 0

    return search
