"""A request body held whole before the service: in memory, then in a temporary file.

The buffering middleware holds a body until it is complete, as Traefik's
(oxy's buffer) does: up to ``memRequestBodyBytes`` in memory, the rest in an
anonymous temporary file (deleted when closed, or when the process dies).
The bytes are kept as they will go upstream (chunk framing included), and
sent after the request head at the pace the backend reads them.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.upstream import UpstreamConnection

READ_SIZE = 256 * 1024
# Past this many bytes waiting in the upstream transport, the pump waits.
PUMP_HIGH = 1024 * 1024
PUMP_POLL = 0.002


class BodySpool:
    __slots__ = ("chunked", "file", "memory", "memory_limit", "payload", "size", "task", "writes")

    def __init__(self, memory_limit: int, *, chunked: bool, held: list[bytes] | None) -> None:
        self.memory_limit = memory_limit
        self.chunked = chunked
        self.memory: list[bytes] = []
        self.file: IO[bytes] | None = None
        self.size = 0  # bytes held, framing included
        self.payload = 0  # body bytes held, without chunk framing
        self.writes = 0
        self.task: asyncio.Future[None] | None = None
        for data in held or ():
            self.write(data)

    def write(self, data: bytes) -> None:
        self.writes += 1
        # A chunked body arrives as (size line, data, CRLF) triples (Exchange.body).
        if not self.chunked or self.writes % 3 == 2:
            self.payload += len(data)
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
            return
        self.memory.append(data)
        if self.size > self.memory_limit:
            # Closed by close() when the exchange ends, not at the end of this call.
            self.file = tempfile.TemporaryFile(prefix="turnout-body-")  # noqa: SIM115
            self.file.writelines(self.memory)
            self.memory = []

    def parts(self) -> list[bytes] | None:
        """Everything held, when it is all in memory (sent with the head); else None."""
        return self.memory if self.file is None else None

    def read_payload(self) -> bytes:
        """The whole body, without chunk framing (forwardAuth's forwardBody after buffering)."""
        if self.file is None:
            raw = b"".join(self.memory)
        else:
            self.file.seek(0)
            raw = self.file.read()
        if not self.chunked:
            return raw
        out: list[bytes] = []
        position = 0
        while True:  # framing written by Exchange.body: "SIZE\r\n" data "\r\n", then "0\r\n"
            end = raw.find(b"\r\n", position)
            if end < 0:
                break
            size = int(raw[position:end].split(b";", 1)[0] or b"0", 16)
            if size == 0:
                break
            out.append(raw[end + 2 : end + 2 + size])
            position = end + 2 + size + 2
        return b"".join(out)

    def pump(self, ex: Exchange, upstream: UpstreamConnection) -> None:
        """Send the file's bytes to ``upstream`` after the head, at the pace it takes them."""
        if self.task is not None:
            self.task.cancel()  # a new try (retry): start over
        self.task = asyncio.ensure_future(self._pump(ex, upstream))

    async def _pump(self, ex: Exchange, upstream: UpstreamConnection) -> None:
        spill = self.file
        assert spill is not None
        position = 0
        while position < self.size:
            transport = upstream.transport
            if transport is None or ex.upstream is not upstream:
                return  # the try ended (backend gone, or answered and released)
            if transport.get_write_buffer_size() > PUMP_HIGH:
                await asyncio.sleep(PUMP_POLL)
                continue
            spill.seek(position)
            data = spill.read(READ_SIZE)
            if not data:
                return
            transport.write(data)
            position += len(data)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.file is not None:
            self.file.close()
            self.file = None
        self.memory = []
