"""A yardstick: a minimal uvloop + httptools HTTP/1.1 relay, with none of Turnout's features.

``python -m benchmarks.relay --listen PORT --upstream HOST:PORT``

Issue 4 measured such a relay to set Turnout's expectations ("the ceiling is far
above Caddy and not far below HAProxy; the features must not eat it"). This one
runs in the same benchmark run as the others (target ``relay``), so that what
Turnout's features cost, and how far any proxy on this stack can go, are read
from the same minutes of the same machine.

It is a measuring instrument, not a proxy: no routing, no header rewriting, no
X-Forwarded-*, no limits or timeouts, no metrics, no error pages, no pipelining.
Request bytes go to a pooled keep-alive upstream connection as read (a
``Connection: close`` line, as wrk and the bundled load generator write it, is
taken out so that the upstream connection stays reusable, and the response's
``Connection: keep-alive`` then says ``close``: the rewrites a proxy keeping
upstream connections must make); response bytes go back as read.
httptools parses both directions only to find where each message ends. Flow
control is kept (a slow reader pauses the other side), so large bodies are
relayed the way a real proxy must relay them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import httptools
import uvloop

CLOSE_LINE = b"\r\nConnection: close"
KEEP_ALIVE_LINE = b"\r\nConnection: keep-alive"


class UpstreamPool:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[Upstream] = []
        self.dialing: set[asyncio.Task[None]] = set()  # referenced until done

    def take(self, client: Client) -> Upstream | None:
        while self.idle:
            up = self.idle.pop()
            if up.transport is not None:
                up.client = client
                return up
        task = asyncio.ensure_future(self._dial(client))
        self.dialing.add(task)
        task.add_done_callback(self.dialing.discard)
        return None

    async def _dial(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(
                lambda: Upstream(self, client), self.host, self.port
            )
        except OSError:
            if client.transport is not None:
                client.transport.abort()
            return
        client.dialed(up)


class Upstream(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, client: Client) -> None:
        self.pool = pool
        self.client: Client | None = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is not None and client.transport is not None:
            if client.close_after:  # the client is told, as Turnout tells it
                client.transport.write(data.replace(KEEP_ALIVE_LINE, CLOSE_LINE, 1))
            else:
                client.transport.write(data)
        self.parser.feed_data(data)  # as the backend sent it: this connection stays open

    def on_message_complete(self) -> None:
        client = self.client
        self.client = None
        if self.parser.should_keep_alive():
            self.pool.idle.append(self)
        elif self.transport is not None:
            self.transport.close()
        if client is not None:
            client.response_done()

    def pause_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.parser = None  # type: ignore[assignment]  # it holds bound methods: a cycle
        client, self.client = self.client, None
        if client is not None and client.transport is not None:
            client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.upstream: Upstream | None = None
        self.waiting: list[bytes] | None = None  # bytes read while dialing
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)  # finds where the request ends, sets close_after
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.close_after:
            data = data.replace(CLOSE_LINE, b"")
        up = self.upstream
        if up is None:
            if self.waiting is not None:
                self.waiting.append(data)
                return
            up = self.upstream = self.pool.take(self)
            if up is None:
                self.waiting = [data]
                return
        if up.transport is not None:
            up.transport.write(data)

    def on_headers_complete(self) -> None:
        self.close_after = not self.parser.should_keep_alive()

    def dialed(self, up: Upstream) -> None:
        waiting, self.waiting = self.waiting, None
        if self.transport is None:
            up.client = None
            self.pool.idle.append(up)
            return
        self.upstream = up
        if waiting and up.transport is not None:
            up.transport.writelines(waiting)

    def response_done(self) -> None:
        self.upstream = None
        if self.close_after and self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.parser = None  # type: ignore[assignment]
        up, self.upstream = self.upstream, None
        if up is not None and up.transport is not None:
            up.transport.close()  # mid-response: the connection cannot be reused


async def serve(port: int, upstream: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    pool = UpstreamPool(host or "127.0.0.1", int(up_port))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(pool), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True, help="127.0.0.1 port to listen on")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the HTTP backend")
    args = ap.parse_args()
    uvloop.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
