"""Backpressure in both directions (issue 2, section 5).

A slow client never makes Turnout hold more than a bounded amount per
connection: while one side does not read, Turnout stops reading the other, so
the sender is held back by the kernel's socket buffers instead of Turnout's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time

from tests.integration.harness import ResponseReader, connect, dynamic_for, read_head

SIZE = 64 * 1024 * 1024
PIECE = b"p" * (64 * 1024)
MiB = 1024 * 1024


def test_client_not_reading_holds_back_the_backend(backend, turnout):
    sent = [0]

    async def firehose(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(PIECE)):
            writer.write(PIECE)
            await writer.drain()
            sent[0] += len(PIECE)

    server = backend(raw=firehose)
    proxy = turnout(dynamic_for(server.url))
    rss_before = proxy.rss()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", proxy.port))
    with sock:
        sock.sendall(b"GET /huge HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # the client reads nothing meanwhile
        held_back = sent[0]
        rss_growth = proxy.rss() - rss_before
        received = len(rest)
        sock.settimeout(10)
        while received < SIZE:
            chunk = sock.recv(1024 * 1024)
            assert chunk, "connection closed early"
            received += len(chunk)
    assert held_back < 24 * MiB, f"the backend could send {held_back / MiB:.1f} MiB"
    assert rss_growth < 16 * MiB, f"turnout grew by {rss_growth / MiB:.1f} MiB"
    assert received == SIZE


def test_backend_not_reading_holds_back_the_client(backend, turnout):
    got = [0]

    async def sluggish(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await asyncio.sleep(2.0)  # reads nothing meanwhile
        while got[0] < length:
            data = await reader.read(1024 * 1024)
            if not data:
                return
            got[0] += len(data)
        body = str(got[0]).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    server = backend(raw=sluggish)
    proxy = turnout(dynamic_for(server.url))
    rss_before = proxy.rss()
    with connect(proxy.port, timeout=15) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % SIZE)
        sock.setblocking(False)
        accepted = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], 0.05)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    accepted += sock.send(PIECE)
        rss_growth = proxy.rss() - rss_before
        sock.setblocking(True)
        sock.settimeout(15)
        remaining = SIZE - accepted
        while remaining > 0:
            remaining -= sock.send(PIECE[: min(len(PIECE), remaining)])
        response = ResponseReader(sock).read(15)
    assert accepted < 24 * MiB, f"the client could send {accepted / MiB:.1f} MiB"
    assert rss_growth < 16 * MiB, f"turnout grew by {rss_growth / MiB:.1f} MiB"
    assert response.status == 200
    assert response.body == str(SIZE).encode()
