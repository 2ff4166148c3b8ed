"""``turnout run --workers N``: N worker processes behind one supervisor.

Each worker is a whole Turnout (its own event loop, snapshot and pools) that
binds the entry points with SO_REUSEPORT, so the kernel spreads new
connections across them. The supervisor forks them after the configuration
has been loaded and validated once, passes signals on (SIGTERM/SIGINT drain,
SIGHUP reloads, SIGUSR1 dumps stats), restarts a worker that dies, and exits
when every worker has drained.

Fork rather than spawn: the configuration is decoded once, and a worker starts
in milliseconds. The supervisor never starts an event loop, so nothing of one
is inherited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger("turnout.workers")

# A worker that exits within this long of starting failed at start-up (a port
# it cannot bind, say): restarting it would only fail again.
STARTUP_WINDOW = 2.0
# Restarts of a crashing worker back off up to this delay.
MAX_BACKOFF = 5.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
# Set in a worker by a SIGTERM/SIGINT that arrives before its event loop takes
# signals over; the Instance then stops as soon as it has started.
EARLY_STOP: list[int] = []


class Supervisor:
    def __init__(self, count: int, run_worker: Callable[[int], int]) -> None:
        self.count = count
        self.run_worker = run_worker
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.failures: dict[int, int] = {}  # index -> consecutive crashes
        self.stopping = False
        self.exit_code = 0
        self._pending: list[int] = []

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            # The worker: default signal handling, then a whole Turnout.
            for signum in (signal.SIGHUP, signal.SIGUSR1):
                signal.signal(signum, signal.SIG_IGN)  # until the loop handles them
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda signum, frame: EARLY_STOP.append(signum))
            code = 1
            try:
                code = self.run_worker(index)
            except BaseException:
                logging.getLogger("turnout").exception("worker %d crashed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.workers[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def _forward(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):  # already gone: reaped next
                os.kill(pid, signum)

    def run(self) -> int:
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)
        for index in range(self.count):
            self._spawn(index)
        while self.workers:
            while self._pending:
                self._forward(self._pending.pop(0))
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self._reap(pid, status)
        return self.exit_code

    def _reap(self, pid: int, status: int) -> None:
        index, started = self.workers.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                self.exit_code = self.exit_code or 1
            return
        if time.monotonic() - started < STARTUP_WINDOW and code == 1:
            # A start-up failure (already reported on stderr by the worker):
            # stop everything and report it as the supervisor's own.
            log.error("worker %d failed to start; stopping", index)
            self.exit_code = 1
            self._forward(signal.SIGTERM)
            return
        lived = time.monotonic() - started
        failures = 1 if lived > 60 else self.failures.get(index, 0) + 1
        self.failures[index] = failures
        delay = min(MAX_BACKOFF, 0.1 * 2 ** (failures - 1))
        log.error("worker %d (pid %d) exited with %s; restarting in %.1fs", index, pid, code, delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.stopping:
            while self._pending:
                self._forward(self._pending.pop(0))
            time.sleep(0.05)
        if not self.stopping:
            self._spawn(index)
