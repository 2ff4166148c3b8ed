"""The Protocol relay: bytes pass through Python, with pause/resume backpressure.

Used where ``os.splice`` is not available, when it is switched off
(``TURNOUT_TCP_RELAY=protocol``), and towards backends reached over TLS
(``servers[].tls``), whose bytes the kernel cannot move for us.

Each side is a small Protocol that writes what it receives to the other side's
transport. When one transport's write buffer passes its high-water mark it
pauses reading on the other (``pause_writing``) and resumes it when drained,
so a fast sender never makes Turnout hold more than one buffer. A FIN
(``eof_received``) is passed on with ``write_eof`` and the transport stays
open for the other direction (half-close).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.http.flow import WRITE_HIGH, WRITE_LOW

if TYPE_CHECKING:
    from proxy.tcp.front import TcpFront

__all__ = ["ProtocolRelay", "RelaySide"]


class RelaySide(asyncio.Protocol):
    __slots__ = ("eof", "other", "relay", "transport")

    def __init__(self, relay: ProtocolRelay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.other: RelaySide | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)  # type: ignore[attr-defined]
        if self is self.relay.backend:
            # Before any other byte can reach this transport: what the client sent
            # while the backend was dialled (the peeked bytes, a PROXY header first).
            front = self.relay.front
            if front.buffer:
                transport.write(bytes(front.buffer))  # type: ignore[attr-defined]
                front.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        relay.front.active = relay.front.clock.now
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.write(data)
        else:
            # The backend is still being dialled (uvloop may start reading a
            # transport whose protocol paused it in connection_made): hold the
            # bytes with the front's, sent first once the backend is there.
            relay.front.buffer += data

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is not None and other.transport is not None:
            if other.transport.can_write_eof():
                other.transport.write_eof()
            else:
                # TLS towards the backend cannot half-close: end the whole connection.
                self.relay.front.relay_finished()
                return False
        self.relay.direction_done()
        return True  # keep the transport open: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.relay.side_lost(self, exc)

    def pause_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None and not other.eof:
            other.transport.resume_reading()


class ProtocolRelay:
    __slots__ = ("backend", "client", "closed", "front")

    def __init__(self, front: TcpFront) -> None:
        self.front = front
        self.client = RelaySide(self)
        self.backend = RelaySide(self)
        self.client.other = self.backend
        self.backend.other = self.client
        self.closed = False

    def direction_done(self) -> None:
        if self.client.eof and self.backend.eof:
            self.front.relay_finished()
        else:
            self.front.half_closed()

    def side_lost(self, side: RelaySide, exc: Exception | None) -> None:
        if self.closed:
            return
        # One side is gone: a reset or a close without FIN ends the connection.
        self.front.relay_failed(exc if isinstance(exc, OSError) else None)

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.backend):
            transport = side.transport
            if transport is not None:
                if abort:
                    transport.abort()
                else:
                    transport.close()
