"""Bundled benchmark backend: uvloop + httptools, keep-alive, prebuilt responses.

Used when nginx is not installed. Serves the same resources as the nginx backend:
  /1m   -> 1 MiB of bytes (application/octet-stream)
  other -> 200 "hello world\\n" (12 bytes)

Run: python -m benchmarks.backend --port PORT [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import httptools
import uvloop

SMALL_BODY = b"hello world\n"
LARGE_PATH = b"/1m"
LARGE_SIZE = 1 << 20


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
RESPONSES: dict[tuple[bool, bool], bytes] = {
    (large, ka): _response(
        _LARGE if large else SMALL_BODY,
        b"application/octet-stream" if large else b"text/plain",
        ka,
    )
    for large in (False, True)
    for ka in (False, True)
}
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BackendProtocol(asyncio.Protocol):
    __slots__ = ("large", "parser", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.large = False

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
        self.large = url == LARGE_PATH or url.startswith(LARGE_PATH + b"?")

    def on_message_complete(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        ka = self.parser.should_keep_alive()
        t.write(RESPONSES[(self.large, ka)])
        if not ka:
            t.close()

    def _write_close(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backend", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
