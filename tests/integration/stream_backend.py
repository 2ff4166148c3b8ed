"""A backend process for fault tests: long streaming responses, or silence.

Run: python -m tests.integration.stream_backend --port PORT [--name NAME] [--mode MODE]

Modes:
  stream  (default) GET /stream answers 200 with a 1 GiB Content-Length body and
          /chunked a chunked body that never ends, both dripped at
          ``--piece`` bytes every ``--every`` seconds, so responses are always in
          flight when the process is killed. Anything else gets 200 "ok".
          Every response carries ``X-Backend: NAME``.
  silent  accept connections, read what comes, never answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args) -> None:
    name = args.name.encode()
    piece = b"s" * args.piece
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1]
        if target == b"/stream":
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
                % (name, args.size)
            )
            left = args.size
            while left > 0:
                writer.write(piece if left >= len(piece) else piece[:left])
                left -= len(piece)
                await writer.drain()
                await asyncio.sleep(args.every)
        elif target == b"/chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % name
            )
            line = b"%x\r\n" % len(piece)
            while True:
                writer.write(line + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(args.every)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: 2\r\n\r\nok" % name)
            await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args) -> None:
    while await reader.read(65536):
        pass


async def main(args) -> None:
    handler = silent if args.mode == "silent" else stream

    async def serve(reader, writer):
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer, args)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", args.port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--mode", choices=["stream", "silent"], default="stream")
    parser.add_argument("--piece", type=int, default=4096)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=1 << 30)
    asyncio.run(main(parser.parse_args()))
