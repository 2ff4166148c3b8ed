"""Bundled benchmark backend: uvloop + httptools, keep-alive, prebuilt responses.

Used when nginx is not installed. Serves the same resources as the nginx backend:
  /1m     -> 1 MiB of bytes (application/octet-stream)
  /upload -> 200 "ok\\n" once the whole request body has been read (POST uploads)
  other   -> 200 "hello world\\n" (12 bytes)

Run: python -m benchmarks.backend --port PORT [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

SMALL_BODY = b"hello world\n"
LARGE_PATH = b"/1m"
LARGE_SIZE = 1 << 20
UPLOAD_PATH = "/upload"
UPLOAD_BODY = b"ok\n"


def large_body() -> bytes:
    """The 1 MiB resource: a repeating printable pattern (same bytes as the nginx file)."""
    pattern = bytes(range(32, 127))
    return (pattern * (LARGE_SIZE // len(pattern) + 1))[:LARGE_SIZE]


def _response(body: bytes, content_type: bytes, keep_alive: bool) -> bytes:
    conn = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 200 OK\r\nServer: turnout-bench\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: "
        + conn
        + b"\r\n\r\n"
        + body
    )


_LARGE = large_body()
SMALL, LARGE, UPLOAD = 0, 1, 2
_BODIES = {
    SMALL: (SMALL_BODY, b"text/plain"),
    LARGE: (_LARGE, b"application/octet-stream"),
    UPLOAD: (UPLOAD_BODY, b"text/plain"),
}
RESPONSES: dict[tuple[int, bool], bytes] = {
    (kind, ka): _response(body, ctype, ka)
    for kind, (body, ctype) in _BODIES.items()
    for ka in (False, True)
}
_UPLOAD = UPLOAD_PATH.encode()
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BackendProtocol(asyncio.Protocol):
    __slots__ = ("kind", "parser", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.kind = SMALL

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._write_close(BAD_REQUEST)
        except httptools.HttpParserError:
            self._write_close(BAD_REQUEST)

    def on_url(self, url: bytes) -> None:
        path = url.split(b"?", 1)[0]
        self.kind = LARGE if path == LARGE_PATH else UPLOAD if path == _UPLOAD else SMALL

    # Request bodies (uploads) are read and dropped: httptools hands them to
    # on_body, which this class does not define; the answer waits for
    # on_message_complete, that is for the last body byte.

    def on_message_complete(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        ka = self.parser.should_keep_alive()
        t.write(RESPONSES[(self.kind, ka)])
        if not ka:
            t.close()

    def _write_close(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_until_stopped(
    host: str, listeners: list[tuple[Callable[[], asyncio.Protocol], int]]
) -> None:
    """Listen with each (protocol factory, port) until SIGTERM or SIGINT.

    Shared by the bundled HTTP, WebSocket and TCP backends.
    """
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(factory, host, port, backlog=4096, reuse_address=True)
        for factory, port in listeners
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


def run_single(
    factory: Callable[[], asyncio.Protocol], prog: str, doc: str | None, argv: list[str] | None
) -> None:
    """Command line of a one-port backend: --host, --port."""
    ap = argparse.ArgumentParser(prog=prog, description=doc)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    uvloop.run(serve_until_stopped(args.host, [(factory, args.port)]))


def main(argv: list[str] | None = None) -> None:
    run_single(BackendProtocol, "python -m benchmarks.backend", __doc__, argv)


if __name__ == "__main__":
    main()
