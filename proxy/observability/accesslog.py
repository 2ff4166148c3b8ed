"""``accessLog``: one line per HTTP request (and per routed TCP connection), in batches.

Theory of operation
-------------------
Once a response is written to the client, the request path builds the
exchange's *record* (``accessrecord.http_record``: a flat tuple, about a
microsecond) and appends it to a list; no formatting, no write. The loop sends
what accumulated every ``FLUSH_INTERVAL`` (0.1 s), or as soon as
``bufferingSize`` records wait (Traefik's option: lines kept in memory before
writing; 0, the default, means 64: one frame per tick instead measured worse,
its bursts of formatting took the proxy's core and doubled p99), to the writer
process
(``proxy.observability.logwriter``), which formats the lines with Traefik's
fields and writes them in one ``write`` per batch to the file opened
``O_APPEND`` (or stdout), so a line is never torn.

``TURNOUT_ACCESS_LOG_WRITER=inline`` formats and writes in the proxy process
itself instead (no extra process; each line then costs the loop a few
microseconds more). The same happens if the writer process cannot be started.

``SIGUSR1`` flushes what is pending into the current file and reopens
``filePath`` (log rotation: ``mv access.log access.log.1; kill -USR1 PID``),
as Traefik does. The same signal still prints the ``turnout-stats`` line.
Formats and fields: ``proxy.observability.accesslines``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.observability.accesslines import AnyRecord, LineFormatter, tcp_record
from proxy.observability.accessrecord import HttpRecorder
from proxy.observability.logwriter import Writer, open_log, write_all

if TYPE_CHECKING:
    from proxy.config.static import AccessLog as AccessLogConfig
    from proxy.http.exchange import Exchange

log = logging.getLogger("turnout")

FLUSH_INTERVAL = 0.1
# Without bufferingSize, records are sent at least every 64.
MAX_BATCH = 64
INLINE = "inline"


class AccessLog:
    """One per process; each entry point that logs gets ``record``."""

    def __init__(self, config: AccessLogConfig) -> None:
        self.config = config
        self.path = config.file_path
        self.limit = config.buffering_size if config.buffering_size > 0 else MAX_BATCH
        self.pending: list[AnyRecord] = []  # records not yet sent (or formatted)
        self.fd = -1  # the file, while this process writes it (inline, or before start)
        self.formatter = LineFormatter(config)  # inline formatting, and its settings
        self.with_headers = self.formatter.with_headers
        self.writer: Writer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._clock = time.perf_counter
        # perf_counter -> wall clock; refreshed on every flush.
        self.offset = time.time() - self._clock()

    # -- life cycle -------------------------------------------------------------

    def open(self) -> None:
        """Open ``filePath`` (creating its folder), or use stdout. Raises OSError."""
        self.fd = open_log(self.path)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the file to a writer process (unless inline), and flush on a timer."""
        self._loop = loop
        if os.environ.get("TURNOUT_ACCESS_LOG_WRITER", "") != INLINE:
            try:
                self.writer = Writer(self.config, self.fd)
            except OSError as error:
                log.error("accessLog: no writer process (%s); formatting lines in process", error)
            else:
                self.writer.attach(loop)
                if self.fd > 2:
                    os.close(self.fd)  # the writer has its own copy
                self.fd = -1
        self._timer = loop.call_later(FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.check()
        assert self._loop is not None
        self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    def reopen(self) -> None:
        """SIGUSR1: what is pending goes to the old file, then ``filePath`` is opened again."""
        self.flush()
        if self.writer is not None:
            self.writer.reopen()
            return
        if not self.path:
            return
        old = self.fd
        try:
            self.open()
        except OSError as error:
            log.error("accessLog: cannot reopen %s: %s; writing the old file", self.path, error)
            self.fd = old
            return
        if old > 2:
            os.close(old)

    def close(self) -> None:
        """The last records written (the writer finishes them), the file closed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1

    # -- the request path ---------------------------------------------------------

    def recorder(self, entrypoint: str) -> Callable[[Exchange], None]:
        # Compiled (proxy/observability/accessrecord.py): it runs for every request.
        return HttpRecorder(self)

    def batch_full(self) -> None:
        """A batch of records is ready: flush it on the loop's next turn."""
        if self._soon is None and self._loop is not None:
            self._soon = self._loop.call_soon(self._flush_soon)

    def tcp_recorder(self, entrypoint: str) -> Callable[[Any, float], None]:
        """The line of a routed TCP connection when it closes (``TcpFront._finish``)."""
        pending = self.pending
        limit = self.limit

        def record(front: Any, started: float) -> None:
            pending.append(tcp_record(front, started, self._clock(), self.offset))
            if len(pending) >= limit and self._soon is None and self._loop is not None:
                self._soon = self._loop.call_soon(self._flush_soon)

        return record

    def _flush_soon(self) -> None:
        self._soon = None
        self.flush()

    # -- sending (the loop, between requests) ----------------------------------------

    def flush(self) -> None:
        self.offset = time.time() - self._clock()
        pending = self.pending
        if not pending:
            return
        records = pending.copy()
        pending.clear()
        if self.writer is not None:
            self.writer.send(records)
        else:
            self.write_lines(records)

    def write_lines(self, records: list[AnyRecord]) -> None:
        """Inline: format and write in this process."""
        if self.fd < 0:
            return
        out = self.formatter.lines(records, _report)
        if out:
            write_all(self.fd, out)


def _report(error: Exception) -> None:
    # One odd request must not cost the others their lines.
    log.error("accessLog: formatting a line failed: %r", error)
