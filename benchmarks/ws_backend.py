"""Bundled WebSocket echo backend: uvloop, a minimal RFC 6455 server.

- An HTTP/1.1 request with `Upgrade: websocket` and a `Sec-WebSocket-Key` gets
  `101 Switching Protocols`; from then on every data frame is echoed back as one
  unmasked frame with the same FIN bit and opcode, a ping gets a pong, a close gets
  a close and the connection ends. Client frames must be masked (RFC 6455 5.1).
- Any other request gets 200 "hello world\\n" (readiness checks, scenario checks).

No extensions, no subprotocols, frames up to 16 MiB. The frame helpers are shared
with the load generator's WebSocket client.

Run: python -m benchmarks.ws_backend --port PORT [--host 127.0.0.1]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from typing import cast

from benchmarks.backend import run_single

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16384
MAX_FRAME = 16 << 20
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

PLAIN_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: turnout-bench-ws\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 12\r\n\r\nhello world\n"
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def mask_bytes(data: bytes, mask: bytes) -> bytes:
    """XOR `data` with the 4-byte `mask` repeated (masking and unmasking are the same)."""
    n = len(data)
    if n == 0:
        return data
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def frame_header(opcode: int, length: int, fin: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mbit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mbit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, length)
    return head + mask if mask is not None else head


def client_frame(
    payload: bytes, opcode: int = OP_BINARY, mask: bytes = b"\x1f\x2e\x3d\x4c"
) -> bytes:
    """A masked client frame (a fixed mask is fine for a benchmark: nobody checks it)."""
    return frame_header(opcode, len(payload), mask=mask) + mask_bytes(payload, mask)


def server_frame_size(payload_len: int) -> int:
    """Bytes of an unmasked frame carrying `payload_len` bytes."""
    if payload_len < 126:
        return 2 + payload_len
    if payload_len < 1 << 16:
        return 4 + payload_len
    return 10 + payload_len


def parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(request or status line, lower-cased header names -> values) of an HTTP head."""
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class WsEchoProtocol(asyncio.Protocol):
    __slots__ = ("buf", "transport", "upgraded")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.upgraded and not self.buf and len(data) >= 6:
            # Fast path: one whole small masked data frame, the benchmark's usual read.
            b0, b1 = data[0], data[1]
            length = b1 & 0x7F
            if b1 & 0x80 and length < 126 and len(data) == 6 + length and b0 & 0x0F <= OP_BINARY:
                t = self.transport
                if t is not None:
                    t.write(bytes((b0, length)) + mask_bytes(data[6:], data[2:6]))
                return
        self.buf += data
        if self.upgraded:
            self._frames()
        else:
            self._heads()

    def _fail(self, response: bytes = b"") -> None:
        t = self.transport
        if t is not None:
            if response:
                t.write(response)
            t.close()
        self.buf.clear()

    def _heads(self) -> None:
        while not self.upgraded and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._fail(BAD_REQUEST)
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            line, headers = parse_head(head)
            if not line.startswith(b"GET ") and b"content-length" in headers:
                self._fail(BAD_REQUEST)  # no request bodies here
                return
            key = headers.get(b"sec-websocket-key")
            if b"websocket" in headers.get(b"upgrade", b"").lower() and key:
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
                )
                self.upgraded = True
                self._frames()
                return
            self.transport.write(PLAIN_RESPONSE)

    def _frames(self) -> None:
        buf = self.buf
        pos = 0
        out: list[bytes] = []
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            hlen = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hlen = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hlen = 10
            if not b1 & 0x80 or length > MAX_FRAME:
                self._fail()  # unmasked client frame, or too large
                return
            end = pos + hlen + 4 + length
            if n < end:
                break
            mask = bytes(buf[pos + hlen : pos + hlen + 4])
            payload = mask_bytes(bytes(buf[pos + hlen + 4 : end]), mask)
            pos = end
            opcode = b0 & 0x0F
            if opcode in (OP_CONT, OP_TEXT, OP_BINARY):
                out.append(frame_header(opcode, length, fin=bool(b0 & 0x80)))
                out.append(payload)
            elif opcode == OP_PING:
                out.append(frame_header(OP_PONG, length))
                out.append(payload)
            elif opcode == OP_CLOSE:
                out.append(frame_header(OP_CLOSE, len(payload[:2])) + payload[:2])
                t = self.transport
                if t is not None:
                    t.writelines(out)
                    t.close()
                buf.clear()
                return
            # pongs are dropped
        if pos:
            del buf[:pos]
        if out and self.transport is not None:
            self.transport.writelines(out)


def main(argv: list[str] | None = None) -> None:
    run_single(WsEchoProtocol, "python -m benchmarks.ws_backend", __doc__, argv)


if __name__ == "__main__":
    main()
