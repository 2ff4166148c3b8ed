"""A body held whole (buffering): in memory, then in a temporary file.

Request side: ``BodySpool``; response side: ``ResponseSpool``.

The buffering middleware holds a body until it is complete, as Traefik's
(oxy's buffer) does: up to ``memRequestBodyBytes`` in memory, the rest in an
anonymous temporary file (deleted when closed, or when the process dies).
A chunked body is kept without its framing: once it is whole it goes
upstream with a Content-Length, as Traefik sends it. The bytes are sent
after the request head at the pace the backend reads them.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.http.exchange import Exchange
    from proxy.http.upstream import UpstreamConnection
    from proxy.middlewares.base import BodyFilter

READ_SIZE = 256 * 1024
# Past this many bytes waiting in the upstream transport, the pump waits.
PUMP_HIGH = 1024 * 1024
PUMP_POLL = 0.002


class _Held:
    """Bytes kept in memory up to ``memory_limit``, past it all in an anonymous temporary file."""

    __slots__ = ("file", "memory", "memory_limit", "size", "task")
    prefix = "turnout-"

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.memory: list[bytes] = []
        self.file: IO[bytes] | None = None
        self.size = 0  # bytes held
        self.task: asyncio.Future[None] | None = None  # sending them, from the file

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
            return
        self.memory.append(data)
        if self.size > self.memory_limit:
            # Closed by close() when the exchange ends, not at the end of this call.
            self.file = tempfile.TemporaryFile(prefix=self.prefix)  # noqa: SIM115
            self.file.writelines(self.memory)
            self.memory = []

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.file is not None:
            self.file.close()
            self.file = None
        self.memory = []


class BodySpool(_Held):
    __slots__ = ("chunked", "payload", "writes")
    prefix = "turnout-body-"

    def __init__(self, memory_limit: int, *, chunked: bool, held: list[bytes] | None) -> None:
        super().__init__(memory_limit)  # size: bytes held, chunk framing included
        self.chunked = chunked
        self.payload = 0  # body bytes held, without chunk framing
        self.writes = 0
        for data in held or ():
            self.write(data)

    def write(self, data: bytes) -> None:
        self.writes += 1
        # A chunked body arrives as (size line, data, CRLF) triples (Exchange.body),
        # then the last chunk: only the data is kept.
        if self.chunked and self.writes % 3 != 2:
            return
        self.payload += len(data)
        self._keep(data)

    def parts(self) -> list[bytes] | None:
        """Everything held, when it is all in memory (sent with the head); else None."""
        return self.memory if self.file is None else None

    def read_payload(self) -> bytes:
        """The whole body (forwardAuth's forwardBody after buffering)."""
        if self.file is None:
            return b"".join(self.memory)
        self.file.seek(0)
        return self.file.read()

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


class ResponseSpool(_Held):
    """A response body held whole before the client gets it (buffering, as oxy's buffer).

    Up to ``memory_limit`` bytes in memory, the rest in an anonymous temporary
    file; ``write`` says False once the body passes ``limit`` (0: no limit):
    nothing more is kept, and the engine calls ``overflow``. ``send`` hands
    the body to ``ex.response_body`` at the pace the client takes it, then
    calls ``done``.

    What a middleware inside the buffering does to the body happens before it
    is held, as it writes into oxy's buffer: ``filter`` rewrites every write
    (compress), and ``sniff`` (compress waiting for ``minResponseBodyBytes``)
    sees the first ``sniff_size`` bytes, which wait unheld until it has
    decided, and may set ``filter``. ``finish`` ends both once the backend's
    body is whole: what is held then is what the client gets, its length known.
    """

    __slots__ = ("filter", "first_parts", "first_size", "limit", "overflow", "sniff", "sniff_size")
    prefix = "turnout-response-"

    def __init__(self, memory_limit: int, limit: int, overflow: Callable[[Exchange], None]) -> None:
        super().__init__(memory_limit)
        self.limit = limit  # -1: refused whatever its size (its Content-Length said so)
        self.overflow = overflow  # answers instead once the body passed ``limit``
        self.filter: BodyFilter | None = None
        self.sniff: Callable[[bytes], None] | None = None
        self.sniff_size = 0
        self.first_parts: list[bytes] = []  # the body's start, while ``sniff`` waits for it
        self.first_size = 0

    def write(self, data: bytes) -> bool:
        if self.sniff is not None:
            self.first_parts.append(data)
            self.first_size += len(data)
            if self.first_size < self.sniff_size:
                return True  # bounded: sniff_size plus one read
            data = self._decide()
        if self.filter is not None:
            data = self.filter.feed(data)
        return self._hold(data)

    def _decide(self) -> bytes:
        sniff = self.sniff
        assert sniff is not None
        self.sniff = None
        first = b"".join(self.first_parts)
        self.first_parts = []
        sniff(first)
        return first

    def finish(self) -> bool:
        """The backend's body is whole: a waiting ``sniff`` decides, ``filter`` ends."""
        kept = True
        if self.sniff is not None:
            data = self._decide()
            kept = self._hold(self.filter.feed(data) if self.filter is not None else data)
        if self.filter is not None and kept:
            kept = self._hold(self.filter.finish())
        self.filter = None
        return kept

    def _hold(self, data: bytes) -> bool:
        if self.limit and self.size + len(data) > self.limit:
            self.size += len(data)
            self.close()  # the answer is a 500: nothing of this body is needed
            return False
        self._keep(data)
        return True

    def first(self, size: int) -> bytes:
        """The first ``size`` bytes (a middleware's sniff of the body's start)."""
        if self.file is None:
            return b"".join(self.memory)[:size]
        self.file.seek(0)
        return self.file.read(size)

    def send(self, ex: Exchange, done: Callable[[], None]) -> None:
        if self.file is None:
            for data in self.memory:
                ex.response_body(data)
            self.memory = []
            done()
            return
        self.task = asyncio.ensure_future(self._send(ex, done))

    async def _send(self, ex: Exchange, done: Callable[[], None]) -> None:
        spill = self.file
        assert spill is not None
        conn = ex.conn
        position = 0
        while position < self.size:
            transport = conn.transport
            if transport is None:
                return  # the client left; the exchange ends with its connection
            if conn.writing_paused or transport.get_write_buffer_size() > PUMP_HIGH:
                await asyncio.sleep(PUMP_POLL)
                continue
            spill.seek(position)
            data = spill.read(READ_SIZE)
            if not data:
                conn.abort()  # the file lost bytes: the client must see a cut message
                return
            ex.response_body(data)
            conn.flush()
            position += len(data)
        self.task = None
        done()

    def close(self) -> None:
        super().close()
        self.filter = None
        self.sniff = None
        self.first_parts = []
