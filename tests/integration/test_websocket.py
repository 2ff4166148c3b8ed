"""WebSocket (HTTP/1.1 Upgrade) through a real Turnout.

Issue 2, section 5: after a 101 from the backend the two connections are joined
as a raw byte stream in both directions. The backend here is a minimal real
WebSocket server: it checks the handshake, answers 101 with the right
Sec-WebSocket-Accept, and echoes every client frame back as a server frame.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time

from tests.integration.harness import (
    ResponseReader,
    connect,
    dynamic_for,
    read_head,
    recv_exactly,
    wait_closed,
    wait_until,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = base64.b64encode(b"turnout-ws-key16").decode()
HANDSHAKE = (
    "GET /chat?room=1 HTTP/1.1\r\nHost: ws.example.com\r\n"
    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    "Origin: http://ws.example.com\r\n\r\n"
).encode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(payload: bytes, opcode: int = 1, mask: bool = True) -> bytes:
    """One final WebSocket frame; clients mask, servers do not (RFC 6455 5.2)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if second & 0x80 else b""
    payload = await reader.readexactly(size)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def read_server_frame(sock, timeout: float = 5.0) -> tuple[int, bytes]:
    first, second = recv_exactly(sock, 2, timeout)
    assert not second & 0x80, "a server frame must not be masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", recv_exactly(sock, 2, timeout))
    elif size == 127:
        (size,) = struct.unpack("!Q", recv_exactly(sock, 8, timeout))
    return first & 0x0F, recv_exactly(sock, size, timeout)


class EchoServer:
    """The WebSocket backend's behaviour, and what it saw."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.heads: list[bytes] = []
        self.frames: list[bytes] = []
        self.greeting = greeting
        self.closed_by_client = False

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_for(key).encode() + b"\r\n\r\n" + self.greeting
        )
        await writer.drain()
        while True:
            try:
                opcode, payload = await read_frame(reader)
            except asyncio.IncompleteReadError:
                self.closed_by_client = True
                return
            self.frames.append(payload)
            if opcode == 8:  # close: answer it and end the connection
                writer.write(frame(payload, 8, mask=False))
                await writer.drain()
                return
            writer.write(frame(payload, opcode, mask=False))
            await writer.drain()


def handshake(sock) -> tuple[bytes, bytes]:
    sock.sendall(HANDSHAKE)
    head, rest = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101"), head
    return head, rest


def test_websocket_handshake_and_echo_in_both_directions(backend, turnout):
    echo = EchoServer()
    server = backend(raw=echo)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        head, rest = handshake(sock)
        assert rest == b""
        lines = head.lower().split(b"\r\n")
        assert b"upgrade: websocket" in lines
        assert b"connection: upgrade" in lines
        assert f"sec-websocket-accept: {accept_for(KEY)}".lower().encode() in lines
        for message in (b"hello", b"x" * 200, os.urandom(70000)):
            sock.sendall(frame(message, opcode=2))
            assert read_server_frame(sock) == (2, message)
    assert echo.frames[:2] == [b"hello", b"x" * 200]
    [seen] = echo.heads
    lower = seen.lower()
    assert seen.startswith(b"GET /chat?room=1 HTTP/1.1\r\n")
    assert b"\r\nupgrade: websocket\r\n" in lower
    assert b"upgrade" in next(
        line for line in lower.split(b"\r\n") if line.startswith(b"connection:")
    )
    assert f"sec-websocket-key: {KEY}".lower().encode() in lower
    assert b"\r\nsec-websocket-version: 13\r\n" in lower
    assert b"\r\nx-forwarded-proto: ws\r\n" in lower


def test_bytes_sent_right_after_the_handshake_are_not_lost(backend, turnout):
    # The client's first frame rides in the same segment as its handshake, and the
    # backend's greeting in the same segment as its 101.
    echo = EchoServer(greeting=frame(b"welcome", mask=False))
    server = backend(raw=echo)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(HANDSHAKE + frame(b"early bird"))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101")
        # The backend sends its greeting with the 101, then echoes the early frame.
        expected = frame(b"welcome", mask=False) + frame(b"early bird", mask=False)
        received = rest + recv_exactly(sock, len(expected) - len(rest))
        assert received == expected
    assert echo.frames[0] == b"early bird"


def test_large_messages_cross_the_tunnel_intact(backend, turnout):
    echo = EchoServer()
    server = backend(raw=echo)
    proxy = turnout(dynamic_for(server.url))
    payload = os.urandom(2 * 1024 * 1024)
    with connect(proxy.port, timeout=10) as sock:
        handshake(sock)
        sock.sendall(frame(payload, opcode=2))
        opcode, echoed = read_server_frame(sock, 10)
    assert opcode == 2
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


def test_backend_closing_the_websocket_closes_the_client(backend, turnout):
    echo = EchoServer()
    server = backend(raw=echo)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        handshake(sock)
        sock.sendall(frame(struct.pack("!H", 1000) + b"bye", opcode=8))
        assert read_server_frame(sock) == (8, struct.pack("!H", 1000) + b"bye")
        closed, extra = wait_closed(sock, 3)
    assert closed and extra == b""


def test_client_leaving_the_websocket_closes_the_backend_side(backend, turnout):
    echo = EchoServer()
    server = backend(raw=echo)
    proxy = turnout(dynamic_for(server.url))
    baseline = proxy.open_fds()
    with connect(proxy.port) as sock:
        handshake(sock)
        sock.sendall(frame(b"ping"))
        assert read_server_frame(sock) == (1, b"ping")
        assert server.open_connections == 1
    assert wait_until(lambda: server.open_connections == 0, 3), "backend side left open"
    assert echo.closed_by_client
    assert wait_until(lambda: proxy.open_fds() <= baseline, 3), (
        f"{proxy.open_fds()} fds open, {baseline} before the WebSocket"
    )


def test_upgrade_refused_by_backend_leaves_a_usable_http_connection(backend, turnout):
    async def refuse_upgrades(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" in head.lower():
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server = backend(raw=refuse_upgrades)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(HANDSHAKE)
        refused = reader.read()
        assert refused.status == 403
        assert refused.body == b"no"
        # The connection is plain HTTP again (Traefik keeps serving it); closing it
        # is acceptable too, hanging is not.
        time.sleep(0.1)
        try:
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: ws.example.com\r\n\r\n")
            following = reader.read(3)
        except (ConnectionError, BrokenPipeError):
            following = None
        except TimeoutError:
            raise AssertionError("the connection hangs after a refused upgrade") from None
    assert following is None or (following.status == 200 and following.body == b"ok")
