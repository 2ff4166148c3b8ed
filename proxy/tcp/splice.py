"""Zero-copy relay: bytes move socket -> pipe -> socket with ``os.splice``, in the kernel.

Theory of operation
-------------------
The relay owns two sockets (the client's, a duplicate of its transport's
descriptor taken before that transport is closed, and the backend's) and one pipe per
direction. Each direction is driven by the event loop's readiness callbacks:

- the source is readable: splice up to ``CHUNK`` bytes from it into the pipe,
  then from the pipe into the destination as far as it takes them;
- the destination would block with bytes in the pipe: stop reading the source
  and wait for the destination to be writable (backpressure: at most one pipe
  of bytes, never Python objects, is held per direction);
- the source reads 0 (its FIN): once the pipe is empty, ``shutdown(SHUT_WR)``
  passes the FIN on, and the other direction keeps flowing (half-close).

Sockets and pipes are closed once, by ``close()``, after every reader and writer was
removed from the loop. ``SPLICE_AVAILABLE`` is False where ``os.splice`` is
missing (not Linux, Python < 3.10), or when ``TURNOUT_TCP_RELAY=protocol``
forces the Protocol relay (tests use it to exercise both paths).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from proxy.tcp.front import TcpFront

__all__ = ["SPLICE_AVAILABLE", "SpliceRelay", "open_pipes"]

SPLICE_AVAILABLE = hasattr(os, "splice") and os.environ.get("TURNOUT_TCP_RELAY", "") != "protocol"

_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# Linux's F_SETPIPE_SZ: a 1 MiB pipe moves bulk transfers in 16x fewer calls than
# the 64 KiB default (capped by /proc/sys/fs/pipe-max-size; a refusal keeps the default).
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20
CHUNK = PIPE_SIZE

# Errors that end a connection (the peer reset it, or it is gone): closed, not logged.
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH)

_open = [0]  # pipes held by live relays, for the SIGUSR1 stats
_splice = getattr(os, "splice", None)


def open_pipes() -> int:
    return _open[0]


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


class _Direction:
    """One way through the relay: ``src`` -> pipe -> ``dst``."""

    __slots__ = (
        "done",
        "dst",
        "dst_sock",
        "eof",
        "front",
        "head",
        "loop",
        "pending",
        "pipe_r",
        "pipe_w",
        "reading",
        "relay",
        "src",
        "writing",
    )

    def __init__(
        self, relay: SpliceRelay, src: socket.socket, dst: socket.socket, head: bytes
    ) -> None:
        self.relay = relay
        self.front = relay.front
        self.loop = relay.loop
        self.src = src.fileno()
        self.dst = dst.fileno()
        self.dst_sock = dst
        self.pipe_r, self.pipe_w = _pipe()
        self.pending = 0  # bytes in the pipe
        self.head = head  # bytes to write before any spliced one (peeked, PROXY header)
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def start(self) -> None:
        if self.head:
            self.flush()
        else:
            self.loop.add_reader(self.src, self.on_readable)
            self.reading = True

    def on_readable(self) -> None:
        # The hot path (a database round trip is two of these): one splice in, one
        # out, no other call when the destination takes everything at once.
        try:
            moved = _splice(self.src, self.pipe_w, CHUNK, None, None, _FLAGS)
        except BlockingIOError:
            return
        except OSError as error:
            self.relay.failed(error)
            return
        front = self.front
        front.active = front.clock.now
        if moved and not self.pending:
            try:
                sent = _splice(self.pipe_r, self.dst, moved, None, None, _FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self.relay.failed(error)
                return
            if sent == moved:
                return
            moved -= sent
        if moved == 0:
            self.eof = True
            if self.reading:
                self.loop.remove_reader(self.src)
                self.reading = False
            if not self.pending:
                self.finish()
            return
        self.pending += moved
        self.flush()

    def on_writable(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Move what is held (head, then pipe) into ``dst``; pause or resume reading."""
        try:
            while self.head:
                sent = os.write(self.dst, self.head)
                self.head = self.head[sent:]
            while self.pending:
                moved = os.splice(self.pipe_r, self.dst, self.pending, flags=_FLAGS)
                if moved == 0:
                    break
                self.pending -= moved
        except BlockingIOError:
            pass
        except OSError as error:
            self.relay.failed(error)
            return
        loop = self.loop
        if self.head or self.pending:
            if self.reading:
                loop.remove_reader(self.src)
                self.reading = False
            if not self.writing:
                loop.add_writer(self.dst, self.on_writable)
                self.writing = True
            return
        if self.writing:
            loop.remove_writer(self.dst)
            self.writing = False
        if self.eof:
            self.finish()
        elif not self.reading:
            loop.add_reader(self.src, self.on_readable)
            self.reading = True

    def finish(self) -> None:
        """The source sent its FIN and all its bytes went out: pass the FIN on."""
        if self.done:
            return
        self.done = True
        # A destination already gone fails here; the other direction will tell.
        with contextlib.suppress(OSError):
            self.dst_sock.shutdown(socket.SHUT_WR)
        self.relay.direction_done()

    def stop(self) -> None:
        loop = self.loop
        if self.reading:
            loop.remove_reader(self.src)
            self.reading = False
        if self.writing:
            loop.remove_writer(self.dst)
            self.writing = False

    def close_pipe(self) -> None:
        os.close(self.pipe_r)
        os.close(self.pipe_w)


class SpliceRelay:
    """Owns both sockets (closing them is its job) and both pipes."""

    __slots__ = ("backend", "client", "closed", "downstream", "front", "loop", "upstream")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        front: TcpFront,
        client: socket.socket,
        backend: socket.socket,
        head: bytes,
    ) -> None:
        self.front = front
        self.loop = loop
        self.client = client
        self.backend = backend
        self.closed = False
        self.upstream = _Direction(self, client, backend, head)
        try:
            self.downstream = _Direction(self, backend, client, b"")
        except OSError:
            self.upstream.close_pipe()
            raise
        _open[0] += 2

    def start(self) -> None:
        self.upstream.start()
        if not self.closed:
            self.downstream.start()

    def direction_done(self) -> None:
        if self.upstream.done and self.downstream.done:
            self.front.relay_finished()
        else:
            self.front.half_closed()

    def failed(self, error: OSError) -> None:
        self.front.relay_failed(error if error.errno not in _GONE else None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.upstream.stop()
        self.downstream.stop()
        self.upstream.close_pipe()
        self.downstream.close_pipe()
        _open[0] -= 2
        self.client.close()
        self.backend.close()
