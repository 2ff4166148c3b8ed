"""Process log set-up: ``log.{level, format, filePath}`` with Traefik's level names.

Traefik logs with zerolog. ``common`` is its console form without colours,
``2026-11-27T15:00:00Z INF message``, with zerolog's three-letter levels (TRC,
DBG, INF, WRN, ERR, FTL, PNC); ``json`` is one object per line,
``{"level":"info","time":"2026-11-27T15:00:00Z","message":"..."}``. Lines go
to stderr, or appended to ``filePath``, which SIGUSR1 reopens (log rotation,
as Traefik). ``maxSize``/``maxAge``/``maxBackups``/``compress`` (Traefik's
built-in rotation) are not implemented: rotate with logrotate and SIGUSR1.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import msgspec

# Traefik's levels; TRACE and PANIC/FATAL map onto the nearest Python level.
LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "PANIC": logging.CRITICAL,
}

# zerolog's console tags and JSON level names.
_TAGS = {
    logging.DEBUG: ("DBG", "debug"),
    logging.INFO: ("INF", "info"),
    logging.WARNING: ("WRN", "warn"),
    logging.ERROR: ("ERR", "error"),
    logging.CRITICAL: ("FTL", "fatal"),
}


def level_of(name: str) -> int | None:
    return LEVELS.get(name.upper())


def _time(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created)) + _zone(created)


def _zone(created: float) -> str:
    offset = time.localtime(created).tm_gmtoff
    if offset == 0:
        return "Z"
    sign = "+" if offset > 0 else "-"
    offset = abs(offset)
    return f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"


class CommonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        tag = _TAGS.get(record.levelno, ("???", ""))[0]
        line = f"{_time(record.created)} {tag} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": _TAGS.get(record.levelno, ("", "info"))[1],
            "time": _time(record.created),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that SIGUSR1 reopens, so that logrotate can move the file away."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


_file_handler: ReopenableFileHandler | None = None


def configure(level: str, format: str = "common", file_path: str = "") -> None:
    """Set up the ``turnout`` loggers. Raises OSError when ``file_path`` cannot be opened."""
    global _file_handler
    handler: logging.Handler
    if file_path:
        folder = os.path.dirname(file_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        handler = _file_handler = ReopenableFileHandler(file_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
        _file_handler = None
    handler.setFormatter(JsonFormatter() if format.lower() == "json" else CommonFormatter())
    root = logging.getLogger("turnout")
    root.handlers[:] = [handler]
    root.setLevel(level_of(level) or logging.ERROR)
    root.propagate = False


def reopen() -> None:
    """SIGUSR1: reopen ``log.filePath`` (nothing to do when logging to stderr)."""
    if _file_handler is not None:
        _file_handler.reopen()
