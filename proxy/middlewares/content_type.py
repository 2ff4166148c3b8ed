"""contentType: set Content-Type from the body when the backend sent none (Traefik v3).

In Traefik v3 the server no longer guesses a response's Content-Type; declaring
this middleware (``contentType: {}``) turns Go's guess back on for the router:
when the backend's response has no Content-Type header at all, the first body
bytes are sniffed as Go's ``http.DetectContentType`` does (the WHATWG MIME
sniffing table Go implements) and the result is set. A response with a
Content-Type (even an empty one), or without a body (HEAD, 204, 304, an empty
body), is left alone, as Go does. ``autoDetect`` is deprecated in Traefik and
redundant with the middleware's presence; it is accepted and changes nothing
here (an explicit ``autoDetect = false`` cannot be told from its absence).

The response head is held until the first body bytes arrive (``head.sniff``);
only the first read from the backend is looked at (up to 512 bytes of it, as Go).
The backend's framing is kept (a Content-Length stays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import ContentType
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, Handler, ResponseHead, add_sniff

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.http.exchange import Exchange

SNIFF_LEN = 512
WHITESPACE = b"\t\n\x0c\r "
# WHATWG "binary data bytes".
BINARY = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])

HTML_TAGS = (
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
)


def _skip_ws(data: bytes) -> bytes:
    return data.lstrip(WHITESPACE)


def _html(data: bytes) -> str | None:
    data = _skip_ws(data)
    for tag in HTML_TAGS:
        if len(data) < len(tag) + 1:
            continue
        for expected, got in zip(tag, data, strict=False):
            if 0x41 <= expected <= 0x5A:
                got &= 0xDF  # ASCII letters match in any case
            if expected != got:
                break
        else:
            if data[len(tag)] in b" >":  # a tag-terminating byte
                return "text/html; charset=utf-8"
    return None


def _masked(
    pattern: bytes, mask: bytes, media: str, skip_ws: bool = False
) -> Callable[[bytes], str | None]:
    def match(data: bytes) -> str | None:
        if skip_ws:
            data = _skip_ws(data)
        if len(data) < len(pattern):
            return None
        for p, m, d in zip(pattern, mask, data, strict=False):
            if d & m != p:
                return None
        return media

    return match


def _exact(prefix: bytes, media: str) -> Callable[[bytes], str | None]:
    def match(data: bytes) -> str | None:
        return media if data.startswith(prefix) else None

    return match


def _mp4(data: bytes) -> str | None:
    if len(data) < 12:
        return None
    box_size = int.from_bytes(data[:4], "big")
    if len(data) < box_size or box_size % 4 != 0:
        return None
    if data[4:8] != b"ftyp":
        return None
    for start in range(8, box_size, 4):
        if start == 12:
            continue  # the minor version
        if data[start : start + 3] == b"mp4":
            return "video/mp4"
    return None


def _text(data: bytes) -> str | None:
    if any(byte in BINARY for byte in data):
        return None
    return "text/plain; charset=utf-8"


FF4 = b"\xff\xff\xff\xff"
SNIFFERS: tuple[Callable[[bytes], str | None], ...] = (
    _html,
    _masked(b"<?xml", b"\xff" * 5, "text/xml; charset=utf-8", skip_ws=True),
    _exact(b"%PDF-", "application/pdf"),
    _exact(b"%!PS-Adobe-", "application/postscript"),
    # Byte order marks.
    _masked(b"\xfe\xff\x00\x00", b"\xff\xff\x00\x00", "text/plain; charset=utf-16be"),
    _masked(b"\xff\xfe\x00\x00", b"\xff\xff\x00\x00", "text/plain; charset=utf-16le"),
    _masked(b"\xef\xbb\xbf\x00", b"\xff\xff\xff\x00", "text/plain; charset=utf-8"),
    # Images.
    _exact(b"\x00\x00\x01\x00", "image/x-icon"),
    _exact(b"\x00\x00\x02\x00", "image/x-icon"),
    _exact(b"BM", "image/bmp"),
    _exact(b"GIF87a", "image/gif"),
    _exact(b"GIF89a", "image/gif"),
    _masked(b"RIFF\x00\x00\x00\x00WEBPVP", FF4 + b"\x00" * 4 + b"\xff" * 6, "image/webp"),
    _exact(b"\x89PNG\x0d\x0a\x1a\x0a", "image/png"),
    _exact(b"\xff\xd8\xff", "image/jpeg"),
    # Audio and video.
    _masked(b"FORM\x00\x00\x00\x00AIFF", FF4 + b"\x00" * 4 + FF4, "audio/aiff"),
    _masked(b"ID3", b"\xff\xff\xff", "audio/mpeg"),
    _masked(b"OggS\x00", b"\xff" * 5, "application/ogg"),
    _masked(b"MThd\x00\x00\x00\x06", b"\xff" * 8, "audio/midi"),
    _masked(b"RIFF\x00\x00\x00\x00AVI ", FF4 + b"\x00" * 4 + FF4, "video/avi"),
    _masked(b"RIFF\x00\x00\x00\x00WAVE", FF4 + b"\x00" * 4 + FF4, "audio/wave"),
    _mp4,
    _exact(b"\x1a\x45\xdf\xa3", "video/webm"),
    # Fonts.
    _masked(
        b"\x00" * 34 + b"LP",
        b"\x00" * 34 + b"\xff\xff",
        "application/vnd.ms-fontobject",
    ),
    _exact(b"\x00\x01\x00\x00", "font/ttf"),
    _exact(b"OTTO", "font/otf"),
    _exact(b"ttcf", "font/collection"),
    _exact(b"wOFF", "font/woff"),
    _exact(b"wOF2", "font/woff2"),
    # Archives.
    _exact(b"\x1f\x8b\x08", "application/x-gzip"),
    _exact(b"PK\x03\x04", "application/zip"),
    _exact(b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    _exact(b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    _exact(b"\x00\x61\x73\x6d", "application/wasm"),
    _text,
)


def detect_content_type(data: bytes) -> str:
    """Go's ``http.DetectContentType``: always a valid media type."""
    data = data[:SNIFF_LEN]
    for sniffer in SNIFFERS:
        media = sniffer(data)
        if media is not None:
            return media
    return "application/octet-stream"


def _set_detected(head: ResponseHead, first: bytes) -> None:
    if first and head.get("Content-Type") is None:
        head.set("Content-Type", detect_content_type(first))


class ContentTypeHandler(Handler):
    __slots__ = ()

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if ex.is_head or head.status in (204, 304) or head.status < 200:
            return
        if head.get("Content-Type") is not None:
            return
        add_sniff(head, _set_detected, 1)


@register("content_type")
def build(name: str, config: ContentType, context: BuildContext) -> Handler:
    return ContentTypeHandler(name)
