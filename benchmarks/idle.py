"""Hold many idle keep-alive connections open (the idle-heavy scenario).

Opens `--count` connections (at most `--concurrency` connecting at once), sends
one GET on each and reads the response, so every connection is a real keep-alive
connection the target has served, then leaves them idle. When they are all set up
(or `--setup-timeout` passed) it prints one JSON line {"ready": N, "failed": M};
it then holds them until its stdin closes or it gets SIGTERM (bounded by
`--hold`), and prints {"still_open": K, "closed_by_peer": C} before exiting.

Run: python -m benchmarks.idle http://127.0.0.1:PORT/ --count 1000 [--host-header H]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import cast

import httptools
import uvloop

from benchmarks.loadgen import parse_url


class IdleClient(asyncio.Protocol):
    __slots__ = ("answered", "closed", "parser", "transport")

    def __init__(self, answered: asyncio.Future[bool]) -> None:
        self.answered = answered
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(False)
            if self.transport is not None:
                self.transport.abort()

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self._answer(200 <= status < 400 and self.parser.should_keep_alive())

    def _answer(self, ok: bool) -> None:
        if not self.answered.done():
            self.answered.set_result(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._answer(False)


async def hold(
    url: str,
    count: int,
    host_header: str | None,
    concurrency: int,
    setup_timeout: float,
    hold_seconds: float,
) -> dict[str, int]:
    _, host, port, path = parse_url(url)
    request = f"GET {path} HTTP/1.1\r\nHost: {host_header or f'{host}:{port}'}\r\n\r\n".encode(
        "latin-1"
    )
    loop = asyncio.get_running_loop()
    clients: list[IdleClient] = []
    failed = 0
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal failed
        async with sem:
            fut: asyncio.Future[bool] = loop.create_future()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: IdleClient(fut), host, port), 10.0
                )
            except (OSError, TimeoutError):
                failed += 1
                return
            assert proto.transport is not None
            proto.transport.write(request)
            try:
                ok = await asyncio.wait_for(fut, 10.0)
            except TimeoutError:
                ok = False
            if ok:
                clients.append(proto)
            else:
                failed += 1
                if proto.transport is not None:
                    proto.transport.abort()

    tasks = [loop.create_task(one()) for _ in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=setup_timeout)
    for t in pending:
        t.cancel()
    failed += len(pending)
    print(json.dumps({"ready": len(clients), "failed": failed}), flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin_closed() -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        stop.set()

    watcher = loop.create_task(stdin_closed())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), hold_seconds)
    watcher.cancel()
    still_open = sum(1 for c in clients if not c.closed)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    await asyncio.sleep(0)
    return {"still_open": still_open, "closed_by_peer": len(clients) - still_open}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.idle", description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--host-header", default=None)
    ap.add_argument("--concurrency", type=int, default=200, help="connections set up at once")
    ap.add_argument("--setup-timeout", type=float, default=30.0)
    ap.add_argument("--hold", type=float, default=900.0, help="longest hold, seconds")
    args = ap.parse_args(argv)
    if not 1 <= args.count <= 20000:
        ap.error("--count must be in [1, 20000]")
    out = uvloop.run(
        hold(
            args.url, args.count, args.host_header, args.concurrency, args.setup_timeout, args.hold
        )
    )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
