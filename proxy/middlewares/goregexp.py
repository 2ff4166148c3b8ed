"""Go's ``regexp.ReplaceAllString`` for the middlewares that rewrite with a regexp.

redirectRegex, redirectScheme, replacePathRegex and stripPrefixRegex compile
their pattern with Go's ``regexp`` and substitute with ``ReplaceAllString``,
whose template rules differ from Python's ``re.sub``: ``$1`` or ``${1}`` is a
group, ``$name`` takes the longest run of letters, digits and ``_`` (so
``$1x`` is the group named ``1x``, empty), a missing group is empty, ``$$`` is
``$``, and a malformed ``$`` stays as it is. Matching runs on google-re2 (the
same RE2 semantics as Go) over the UTF-8 bytes of the text.
"""

from __future__ import annotations

import re2

from proxy.rules.regex import RegexpError, compile_go

__all__ = ["GoRegexp", "RegexpError"]

_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


_OPTIONS = _options()

# One template piece: literal bytes, or a group reference (index, or -1 for "none").
_Piece = bytes | int


class GoRegexp:
    """A compiled Go regexp with capture groups; raises ``RegexpError`` when invalid."""

    __slots__ = ("compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        compile_go(pattern)  # Go's syntax checks and error messages
        self.pattern = pattern
        self.compiled = re2.compile(pattern.encode("utf-8", "surrogateescape"), _OPTIONS)

    def search(self, text: str) -> bool:
        return self.compiled.search(_encode(text)) is not None

    def submatch(self, text: str) -> list[str] | None:
        """Go's ``FindStringSubmatch``: the match and its groups ("" when unset), or None."""
        found = self.compiled.search(_encode(text))
        if found is None:
            return None
        raw = _encode(text)
        groups = []
        for index in range(self.compiled.groups + 1):
            start, end = found.span(index)
            groups.append(_decode(raw[start:end]) if start >= 0 else "")
        return groups

    def template(self, replacement: str) -> list[_Piece]:
        """Parse a ``$``-template once (Go's ``Regexp.expand`` rules)."""
        template = replacement.encode("utf-8", "surrogateescape")
        names = {name: index for name, index in self.compiled.groupindex.items()}
        pieces: list[_Piece] = []
        literal = bytearray()
        i, n = 0, len(template)
        while i < n:
            dollar = template.find(b"$", i)
            if dollar < 0:
                literal += template[i:]
                break
            literal += template[i:dollar]
            i = dollar + 1
            if template[i : i + 1] == b"$":
                literal += b"$"
                i += 1
                continue
            brace = template[i : i + 1] == b"{"
            start = i + 1 if brace else i
            end = start
            while end < n and template[end] in _WORD:
                end += 1
            name = template[start:end]
            if not name or (brace and template[end : end + 1] != b"}"):
                literal += b"$"  # malformed: the "$" is kept as text
                continue
            i = end + 1 if brace else end
            if literal:
                pieces.append(bytes(literal))
                literal.clear()
            if name.isdigit():
                number = int(name)
                pieces.append(number if number <= self.compiled.groups else -1)
            else:
                pieces.append(names.get(name, -1))
        if literal:
            pieces.append(bytes(literal))
        return pieces

    def replace_all(self, text: str, pieces: list[_Piece]) -> str:
        """Go's ``ReplaceAllString`` with a template parsed by ``template``."""
        source = _encode(text)
        out = bytearray()
        search = self.compiled.search
        end = len(source)
        position = 0
        last_end = 0
        while position <= end:
            found = search(source, position)
            if found is None:
                break
            start, stop = found.span()
            out += source[last_end:start]
            # No replacement for an empty match right after the previous match.
            if stop > last_end or start == 0:
                for piece in pieces:
                    if isinstance(piece, bytes):
                        out += piece
                    elif piece >= 0:
                        group_start, group_end = found.span(piece)
                        if group_start >= 0:
                            out += source[group_start:group_end]
            last_end = stop
            width = _rune_width(source, position)
            if position + width > stop:
                position += width
            elif position + 1 > stop:
                position += 1
            else:
                position = stop
        out += source[last_end:]
        return _decode(bytes(out))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _rune_width(source: bytes, position: int) -> int:
    if position >= len(source):
        return 0
    lead = source[position]
    if lead < 0x80:
        return 1
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1
