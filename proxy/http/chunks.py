"""Chunk-line checks that llhttp does not make: the grammar and size of chunk extensions.

llhttp (httptools) decodes chunked bodies strictly, but it accepts empty
extension names (``5;;a``, ``5;=v``) and extensions of any length, and it tells
Python nothing about them. ``ChunkScanner`` follows the same framing over the
raw bytes of a chunked request body, ahead of llhttp, and refuses a chunk line
whose extensions do not match RFC 9112 7.1.1 or add up to more than
``MAX_EXTENSION_BYTES``. It runs only for chunked request bodies: other
requests never reach it.

Raising ``BadRequest`` from inside the parse means the bytes of that read are
dropped before anything of them is written upstream (see
``HttpConnection.data_received``).
"""

from __future__ import annotations

import re

from proxy.http.errors import BadRequest

# nginx and HAProxy refuse chunk extensions long before this; llhttp sets no limit.
MAX_EXTENSION_BYTES = 4096
# A chunk-size line: hex digits (llhttp refuses other sizes), then extensions.
MAX_LINE_BYTES = 16 + MAX_EXTENSION_BYTES + 2

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_LINE = re.compile(
    rb"[0-9A-Fa-f]+((?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*)"
)

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkScanner:
    __slots__ = ("extension_bytes", "line", "remaining", "state")

    def __init__(self) -> None:
        self.state = _SIZE
        self.line = b""
        self.remaining = 0
        self.extension_bytes = 0

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, position: int = 0) -> None:
        """Follow the chunk framing of ``data[position:]``; raise BadRequest on a bad line."""
        end = len(data)
        while position < end:
            state = self.state
            if state == _DATA:
                step = min(self.remaining, end - position)
                self.remaining -= step
                position += step
                if self.remaining == 0:
                    self.state = _DATA_END
                    self.remaining = 2
            elif state == _DATA_END:
                step = min(self.remaining, end - position)
                self.remaining -= step
                position += step
                if self.remaining == 0:
                    self.state = _SIZE
            elif state == _DONE:
                return
            else:
                newline = data.find(b"\n", position)
                if newline < 0:
                    self.line += data[position:]
                    if state == _SIZE and len(self.line) > MAX_LINE_BYTES:
                        raise BadRequest("chunk line too long")
                    return
                line = self.line + data[position : newline + 1]
                self.line = b""
                position = newline + 1
                if state == _SIZE:
                    self._size_line(line)
                elif line == b"\r\n":
                    self.state = _DONE  # the empty line after the trailers

    def _size_line(self, line: bytes) -> None:
        match = _LINE.fullmatch(line[:-2]) if line.endswith(b"\r\n") else None
        if match is None:
            raise BadRequest("invalid chunk size line")
        extensions = len(match.group(1))
        if extensions:
            self.extension_bytes += extensions
            if self.extension_bytes > MAX_EXTENSION_BYTES:
                raise BadRequest("chunk extensions too long")
        size = int(line[: match.start(1)], 16)
        if size == 0:
            self.state = _TRAILER
        else:
            self.state = _DATA
            self.remaining = size
