"""compress: gzip, Brotli or Zstandard chosen from Accept-Encoding (Traefik's compress).

Choice of encoding, as Traefik's acceptencoding.go: without weights the first
of the configured ``encodings`` (default gzip, br, zstd) that the client lists
wins; with weights the client's order by weight decides; ``*`` means the
default encoding (``defaultEncoding``, else br when allowed, else the first);
``identity;q=0`` or ``*;q=0`` and no match mean no compression (never 406).
Unlike Traefik, ``gzip;q=0`` is never chosen: q=0 means "not acceptable".
No Accept-Encoding: ``defaultEncoding`` if set, else nothing.

A response is left alone when it is to HEAD, has no body (1xx, 204, 304), is
a 206 range, already has Content-Encoding, has an excluded Content-Type (or
one outside includedContentTypes; application/grpc is always excluded), or
declares a Content-Length below ``minResponseBodyBytes``. Without a
Content-Length, as Traefik, the head and the first body bytes are held until
``minResponseBodyBytes`` of body arrived (then compressed) or the body ended
below it (then sent as it is); a stream that stalls is decided 100 ms after
its first bytes, as Traefik's proxy flushes by then (below the minimum: not
compressed). At most that many bytes (plus one read) are ever held.

Compression streams: every chunk read from the backend goes out compressed
and flushed at once, so no whole response is ever buffered and an event
stream is not held back. ``Vary: Accept-Encoding`` is added whenever an
encoding was chosen, as Traefik does.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.dynamic import Compress
from proxy.middlewares import register
from proxy.middlewares.base import (
    BodyFilter,
    BuildContext,
    BuildError,
    Handler,
    ResponseHead,
    add_sniff,
)

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

GZIP, BROTLI, ZSTD, IDENTITY, ANY = "gzip", "br", "zstd", "identity", "*"
KNOWN = (GZIP, BROTLI, ZSTD)
DEFAULT_ENCODINGS = [GZIP, BROTLI, ZSTD]
NO_BODY = frozenset({204, 206, 304})

ContentType = tuple[str, dict[str, str]]


class GzipFilter(BodyFilter):
    __slots__ = ("stream",)

    def __init__(self) -> None:
        self.stream = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing

    def feed(self, data: bytes) -> bytes:
        return self.stream.compress(data) + self.stream.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self.stream.flush(zlib.Z_FINISH)


class BrotliFilter(BodyFilter):
    __slots__ = ("stream",)

    def __init__(self) -> None:
        import brotli

        # Quality 5: andybalholm/brotli's default level is 6; 5 costs ~40 % less
        # CPU for a ratio within a few per cent on text.
        self.stream = brotli.Compressor(quality=5)

    def feed(self, data: bytes) -> bytes:
        return self.stream.process(data) + self.stream.flush()

    def finish(self) -> bytes:
        return self.stream.finish()


class ZstdFilter(BodyFilter):
    __slots__ = ("block", "stream")

    def __init__(self) -> None:
        import zstandard

        self.stream = zstandard.ZstdCompressor(level=3).compressobj()
        self.block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def feed(self, data: bytes) -> bytes:
        return self.stream.compress(data) + self.stream.flush(self.block)

    def finish(self) -> bytes:
        return self.stream.flush()


FILTERS: dict[str, Callable[[], BodyFilter]] = {
    GZIP: GzipFilter,
    BROTLI: BrotliFilter,
    ZSTD: ZstdFilter,
}


def parse_content_type(value: str) -> ContentType:
    """Media type and parameters, lower-cased and without spaces (Go's mime.ParseMediaType)."""
    media, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, sep, val = param.partition("=")
        if sep:
            parsed[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), parsed


def content_type_matches(pattern: ContentType, actual: ContentType) -> bool:
    """A pattern without parameters matches any; with some, they must be the same set."""
    if pattern[0] != actual[0]:
        return False
    return not pattern[1] or pattern[1] == actual[1]


def choose_encoding(header_values: list[str], allowed: list[str], default: str) -> str:
    """Traefik's getCompressionType: an encoding of ``allowed``, or "" for none."""
    if not default:
        default = BROTLI if BROTLI in allowed else allowed[0]
    weighted = False
    entries: list[tuple[str, float | None]] = []
    for line in header_values:
        for item in line.replace(" ", "").split(","):
            name, _, param = item.partition(";")
            if name not in (GZIP, BROTLI, ZSTD, IDENTITY, ANY):
                continue
            weight: float | None = None
            if param.startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
                weighted = True
            entries.append((name, weight))
    if weighted:
        # Highest weight first; an unweighted entry goes after weighted ones and
        # before q=0 ones (Traefik's compareEncoding), the sort being stable.
        entries.sort(key=lambda e: (1, 0.0) if e[1] is None else (0 if e[1] else 2, -e[1]))
        for name, weight in entries:
            if name in (IDENTITY, ANY) and weight == 0:
                return ""
            if name == ANY:
                return default
            if name in allowed and weight != 0:  # q=0: "not this one" (RFC 9110 12.4.2)
                return name
        return ""
    names = {name for name, _ in entries}
    for name in allowed:
        if name in names:
            return name
    return default if ANY in names else ""


# Response header lines worth looking at start with one of these bytes.
_INTERESTING = frozenset(b"cCvV")
_CACHE_SIZE = 1024  # distinct Accept-Encoding / Content-Type values remembered


class CompressHandler(Handler):
    __slots__ = ("choices", "default", "encodings", "excludes", "includes", "min_size", "types")

    def __init__(
        self,
        name: str,
        encodings: list[str],
        default: str,
        excludes: list[ContentType],
        includes: list[ContentType],
        min_size: int,
    ) -> None:
        super().__init__(name)
        self.encodings = encodings
        self.default = default
        self.excludes = excludes
        self.includes = includes
        self.min_size = min_size
        # Memos: a response head must cost little (measured: 26 us a head without them, 4 us with).
        self.choices: dict[bytes, str] = {}  # Accept-Encoding values -> encoding
        self.types: dict[bytes, tuple[bool, bool]] = {}  # Content-Type -> (excluded, included)

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if ex.is_head:
            return
        if not self.default:
            # No Accept-Encoding and no default encoding: nothing to do, found
            # with the cheapest look at the request's fields.
            for field in ex.fields:
                if field[0] == b"accept-encoding":
                    break
            else:
                return
        accept: list[bytes] = []
        for lname, _, value in ex.fields:
            if lname == b"accept-encoding":
                accept.append(value)
            elif lname == b"content-type" and self._classify(value)[0]:
                return  # Traefik also skips requests of an excluded type
        # Absent: the default encoding, if any; present but empty: none.
        encoding = self._choose(accept) if accept else self.default
        if not encoding:
            return
        vary = encoded = content_type = length = None
        for line in head.lines:
            if line[0] in _INTERESTING:
                name, _, value = line.partition(b":")
                lname = name.lower()
                if lname == b"content-length":
                    length = value
                elif lname == b"content-type":
                    content_type = value
                elif lname == b"content-encoding":
                    encoded = value
                elif lname == b"vary":
                    vary = value
        if vary is None:
            head.lines.append(b"Vary: Accept-Encoding\r\n")
        else:
            text = vary.strip().decode("latin-1")
            if "accept-encoding" not in text.lower() and text != "*":
                head.set("Vary", text + ", Accept-Encoding")
        status = head.status
        if status < 200 or status in NO_BODY or (encoded is not None and encoded.strip()):
            return
        if length is not None:
            digits = length.strip()
            if digits.isdigit() and int(digits) < self.min_size:
                return
        if content_type is not None:
            excluded, included = self._classify(content_type)
            if excluded or not included:
                return
        if length is None and self.min_size > 0:
            # Unknown size: decide once minResponseBodyBytes arrived, or the body ended.
            add_sniff(head, functools.partial(self._decide, ex, encoding), self.min_size)
            return
        head.set("Content-Encoding", encoding)
        head.body_filter = FILTERS[encoding]()

    def _decide(self, ex: Exchange, encoding: str, head: ResponseHead, first: bytes) -> None:
        if len(first) < self.min_size or head.get("Content-Encoding"):
            # Ended (or stalled) below the minimum: sent as it is; or a compress
            # inside a buffering encoded it meanwhile (Traefik checks at write time).
            return
        content_type = head.get("Content-Type")  # an inner contentType may have set it
        if content_type is not None:
            excluded, included = self._classify(content_type.encode("latin-1"))
            if excluded or not included:
                return
        head.set("Content-Encoding", encoding)
        ex.body_filter = FILTERS[encoding]()

    def _choose(self, accept: list[bytes]) -> str:
        key = b",".join(accept)
        choice = self.choices.get(key)
        if choice is None:
            values = [value.decode("latin-1") for value in accept]
            choice = choose_encoding(values, self.encodings, self.default)
            if len(self.choices) >= _CACHE_SIZE:
                self.choices.clear()
            self.choices[key] = choice
        return choice

    def _classify(self, raw: bytes) -> tuple[bool, bool]:
        known = self.types.get(raw)
        if known is None:
            parsed = parse_content_type(raw.decode("latin-1"))
            excluded = any(content_type_matches(p, parsed) for p in self.excludes)
            included = not self.includes or any(
                content_type_matches(p, parsed) for p in self.includes
            )
            known = (excluded, included)
            if len(self.types) >= _CACHE_SIZE:
                self.types.clear()
            self.types[raw] = known
        return known


@register("compress")
def build(name: str, config: Compress, context: BuildContext) -> Handler:
    if config.excluded_content_types and config.included_content_types:
        raise BuildError(
            "excludedContentTypes and includedContentTypes options are mutually exclusive",
            "includedContentTypes",
        )
    excludes = [parse_content_type("application/grpc")]
    includes: list[ContentType] = []
    for key, source, into in (
        ("excludedContentTypes", config.excluded_content_types, excludes),
        ("includedContentTypes", config.included_content_types, includes),
    ):
        for index, value in enumerate(source):
            parsed = parse_content_type(value)
            if "/" not in parsed[0]:
                raise BuildError(f"invalid media type {value!r}", f"{key}[{index}]")
            into.append(parsed)
    if config.min_response_body_bytes < 0:
        raise BuildError("must not be negative", "minResponseBodyBytes")
    encodings = list(config.encodings) or DEFAULT_ENCODINGS
    for index, encoding in enumerate(encodings):
        if encoding not in KNOWN:
            raise BuildError(f"unsupported encoding: {encoding}", f"encodings[{index}]")
    if config.default_encoding and config.default_encoding not in encodings:
        raise BuildError(
            f"unsupported default encoding: {config.default_encoding}", "defaultEncoding"
        )
    return CompressHandler(
        name,
        encodings,
        config.default_encoding,
        excludes,
        includes,
        config.min_response_body_bytes or 1024,
    )
