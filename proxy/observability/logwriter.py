"""The access log's writer process: formats records into lines and writes them.

Theory of operation
-------------------
A line costs the proxy's event loop a few microseconds to format, and under
load that is a sizeable share of a request (PERFORMANCE.md). So the proxy
only builds a compact record per request (``accessrecord.http_record``) and
sends batches of them, as MessagePack, through a pipe to this process, which
formats them with the same ``LineFormatter`` and writes whole lines to the file
(``O_APPEND``, one ``write`` per batch, so no line is ever torn). The work then
runs on another core, as Traefik's log writer runs in its own goroutine.

The pipe carries frames: a 4-byte big-endian length, then a MessagePack array
of records (msgspec's encoder costs the proxy 1,500 instructions a record,
``marshal`` 2,600, ``pickle`` 3,200). A ``REOPEN`` record, in a frame of its
own, makes the writer reopen ``filePath`` after writing every line before it
(SIGUSR1 in the proxy: log rotation), so no line is lost or written to the
wrong file. End of file on the pipe (the proxy closed it, or died) makes the
writer write what it holds and exit.

The writer ignores SIGINT and SIGTERM: a Ctrl-C or a service manager signals
the whole process group, and the proxy's last lines must still be written; the
proxy closes the pipe once it has stopped, and the writer follows.

``Writer`` is the proxy's side: it starts the process, sends frames without
ever blocking the loop (a backlog drained when the pipe is writable, bounded),
and starts a new writer if one exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import msgspec

from proxy.observability.accesslines import REOPEN, AnyRecord, LineFormatter

if TYPE_CHECKING:
    import asyncio

    from proxy.config.static import AccessLog as AccessLogConfig

log = logging.getLogger("turnout")

_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode

# Frames waiting for the pipe beyond this are dropped (and counted): a writer
# that cannot keep up must not make the proxy's memory grow without bound.
MAX_BACKLOG = 64 * 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1024 * 1024
# A writer that exits is replaced after RESPAWN seconds, doubling up to
# MAX_RESPAWN while each one dies within 10 s of its start.
RESPAWN = 0.5
MAX_RESPAWN = 60.0


def open_log(path: str) -> int:
    """``filePath`` opened for appending (its folder created), or stdout. Raises OSError."""
    if not path:
        return 1
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o755, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o664)


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` whole (a log line is never torn), waiting on a full non-blocking fd."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            time.sleep(0.001)  # stdout as a non-blocking pipe that is full
            continue
        except OSError as error:
            if error.errno != errno.EINTR:
                print(
                    f"turnout accessLog: write failed: {error}; {len(view)} bytes lost",
                    file=sys.stderr,
                )
                return
            continue
        view = view[written:]


class Writer:
    """The proxy's end of the pipe to a writer process."""

    def __init__(self, config: AccessLogConfig, fd: int) -> None:
        # Durations (minDuration) travel as seconds.
        self.config_json = msgspec.json.encode(config, enc_hook=float).decode()
        self.process: subprocess.Popen[bytes] | None = None
        self.pipe = -1
        self.backlog: list[tuple[bytes, int]] = []  # (frame or its rest, records in it)
        self.backlog_size = 0
        self.dropped = 0  # records dropped: backlog full, or in flight when a writer died
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_spawn = 0.0
        self._died_at = 0.0
        self._errors: dict[int, bytes] = {}  # each writer's stderr pipe: a partial line
        self._backoff = RESPAWN
        self._spawn(fd)

    def _spawn(self, fd: int) -> None:
        """Start a writer on ``fd`` (-1: it opens ``filePath`` itself)."""
        read, write = os.pipe()
        errors, errors_in = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "proxy.observability.logwriter", self.config_json, str(fd)],
                stdin=read,
                stderr=errors_in,
                pass_fds=(fd,) if fd > 2 else (),
                close_fds=True,
            )
        except BaseException:
            os.close(write)
            os.close(errors)
            raise
        finally:
            os.close(read)
            os.close(errors_in)
        self._watch_errors(errors)
        os.set_blocking(write, False)
        with contextlib.suppress(OSError):  # room for a backlog of frames, where allowed
            fcntl.fcntl(write, F_SETPIPE_SZ, PIPE_SIZE)
        self.pipe = write
        self._last_spawn = time.monotonic()
        log.debug("accessLog: writer process %d started", self.process.pid)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for fd in self._errors:
            loop.add_reader(fd, self._read_errors, fd)

    # -- the writer's own errors, into Turnout's log -----------------------------

    def _watch_errors(self, fd: int) -> None:
        """The writer's stderr: its messages become Turnout's log lines (``log.filePath``)."""
        os.set_blocking(fd, False)
        self._errors[fd] = b""
        if self._loop is not None:
            self._loop.add_reader(fd, self._read_errors, fd)

    def _read_errors(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            *lines, rest = (self._errors[fd] + chunk).split(b"\n")
            self._errors[fd] = rest[-4096:]  # a message without a newline stays bounded
            for line in lines:
                _log_error(line)
            return
        _log_error(self._errors.pop(fd, b""))  # end of file: the writer has gone
        if self._loop is not None:
            self._loop.remove_reader(fd)
        os.close(fd)

    def _drain_errors(self) -> None:
        """After the writer exited: what it said last, then the pipes closed."""
        for fd in list(self._errors):
            for _ in range(64):  # its pipe holds at most 64 KiB: end of file comes
                if fd not in self._errors:
                    break
                self._read_errors(fd)
            if fd in self._errors:  # a descendant still holds the pipe: stop listening
                _log_error(self._errors.pop(fd))
                if self._loop is not None:
                    self._loop.remove_reader(fd)
                os.close(fd)

    def send(self, records: list[AnyRecord]) -> None:
        if self.pipe < 0:  # between a writer's death and its replacement
            self.dropped += len(records)
            return
        data = _pack(records)
        frame = len(data).to_bytes(4, "big") + data
        if self.backlog:
            self._queue(frame, len(records))
            return
        try:
            written = os.write(self.pipe, frame)
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the writer is gone
            self.dropped += len(records)
            self.check()
            return
        if written < len(frame):
            self._queue(frame[written:], len(records))

    def _queue(self, frame: bytes, count: int) -> None:
        if self.backlog_size + len(frame) > MAX_BACKLOG:
            self.dropped += count
            return
        if not self.backlog and self._loop is not None:
            self._loop.add_writer(self.pipe, self._drain)
        self.backlog.append((frame, count))
        self.backlog_size += len(frame)

    def _drain(self) -> None:
        while self.backlog:
            frame, count = self.backlog[0]
            try:
                written = os.write(self.pipe, frame)
            except BlockingIOError:
                return
            except OSError:  # the writer is gone with what it had not read
                self.dropped += sum(count for _, count in self._forget_backlog())
                self.check()
                return
            self.backlog_size -= written
            if written < len(frame):
                self.backlog[0] = (frame[written:], count)
                return
            self.backlog.pop(0)
        if self._loop is not None:
            self._loop.remove_writer(self.pipe)

    def _forget_backlog(self) -> list[tuple[bytes, int]]:
        """Stop draining; the frames that were waiting."""
        backlog = self.backlog
        if backlog and self._loop is not None:
            self._loop.remove_writer(self.pipe)
        self.backlog = []
        self.backlog_size = 0
        return backlog

    def check(self) -> None:
        """On the tick: report dropped records, and replace a writer that exited.

        A writer that dies soon after its start (it cannot open ``filePath``,
        say) is replaced after 1 s, then 2, 4, ... up to a minute, so a broken
        writer costs one error line per attempt, not a busy loop.
        """
        if self.dropped:
            log.error(
                "accessLog: %d lines lost (the writer process was gone or behind)", self.dropped
            )
            self.dropped = 0
        process = self.process
        if process is not None:
            if process.poll() is None:
                return
            lived = time.monotonic() - self._last_spawn
            self._backoff = min(self._backoff * 2, MAX_RESPAWN) if lived < 10.0 else RESPAWN
            log.error(
                "accessLog: the writer process %d exited with status %s; starting another in %gs",
                process.pid,
                process.returncode,
                self._backoff,
            )
            self.dropped += sum(count for _, count in self._forget_backlog())
            os.close(self.pipe)
            self.pipe = -1
            self.process = None
            self._died_at = time.monotonic()
        if time.monotonic() - self._died_at < self._backoff:
            return
        try:
            self._spawn(-1)
        except OSError as error:
            self._died_at = time.monotonic()
            log.error("accessLog: cannot start a writer process: %s", error)

    def reopen(self) -> None:
        # After every record before it; the writer knows it only in a frame of its own.
        self.send([(REOPEN,)])

    def close(self, timeout: float = 10.0) -> None:
        """Hand over what is queued, close the pipe, and wait for the writer to finish."""
        deadline = time.monotonic() + timeout
        if self.pipe >= 0:
            backlog = self._forget_backlog()
            lost = _write_until(self.pipe, [frame for frame, _ in backlog], deadline)
            if lost:
                log.error("accessLog: the writer process took no more; %d bytes lost", lost)
            os.close(self.pipe)
            self.pipe = -1
        process = self.process
        self.process = None
        if process is None:
            return
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("accessLog: the writer process %d did not finish; killed", process.pid)
            process.kill()
            process.wait()
        self._drain_errors()


def _log_error(line: bytes) -> None:
    text = line.decode("utf-8", "replace").strip()
    if text:
        # The writer prints "turnout accessLog: ..."; Turnout's log says who it is.
        log.error("%s", text.removeprefix("turnout "))


def _write_until(fd: int, frames: list[bytes], deadline: float) -> int:
    """Write ``frames`` to a non-blocking ``fd`` until done or ``deadline``; bytes not written.

    Shutdown must not hang on a writer that stopped reading (stopped, or stuck).
    """
    pending = b"".join(frames)
    view = memoryview(pending)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        except OSError:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        select.select([], [fd], [], min(left, 0.1))
    return len(view)


def serve(config: AccessLogConfig, fd: int, source: int = 0) -> None:
    """The writer's loop: frames from ``source`` until end of file, lines to ``fd``."""
    formatter = LineFormatter(config)
    if fd < 0:
        try:
            fd = open_log(config.file_path)
        except OSError as error:
            print(f"turnout accessLog: cannot open {config.file_path}: {error}", file=sys.stderr)
            raise SystemExit(1) from None
    buffer = bytearray()
    lines = formatter.lines
    while True:
        try:
            chunk = os.read(source, 1 << 20)
        except InterruptedError:
            continue
        if not chunk:
            break
        buffer += chunk
        start = 0
        out: list[bytes] = []
        while len(buffer) - start >= 4:
            size = int.from_bytes(buffer[start : start + 4], "big")
            if len(buffer) - start - 4 < size:
                break
            records = _unpack(buffer[start + 4 : start + 4 + size])
            start += 4 + size
            if len(records) == 1 and records[0][0] == REOPEN:  # a frame of its own
                write_all(fd, b"".join(out))
                out = []
                fd = _reopen(fd, config.file_path)
                continue
            out.append(lines(records, _report))
        del buffer[:start]
        if out:
            write_all(fd, b"".join(out))


def _report(error: Exception) -> None:
    print(f"turnout accessLog: formatting a line failed: {error!r}", file=sys.stderr)


def _reopen(fd: int, path: str) -> int:
    if not path:
        return fd
    try:
        new = open_log(path)
    except OSError as error:
        print(
            f"turnout accessLog: cannot reopen {path}: {error}; writing the old file",
            file=sys.stderr,
        )
        return fd
    if fd > 2:
        os.close(fd)
    return new


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    # Batch work: a frame arriving must not preempt the proxy's event loop
    # where both share a core (Linux's SCHED_BATCH skips wake-up preemption),
    # while the writer keeps its fair share of CPU and so never falls behind.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    from proxy.config.durations import dec_hook
    from proxy.config.static import AccessLog as AccessLogConfig

    config = msgspec.json.decode(argv[0], type=AccessLogConfig, dec_hook=dec_hook)
    serve(config, int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
