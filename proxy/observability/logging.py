"""Process log set-up: Traefik's level names, one line per event on stderr."""

from __future__ import annotations

import logging
import sys

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


def level_of(name: str) -> int | None:
    return LEVELS.get(name.upper())


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname).3s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root = logging.getLogger("turnout")
    root.handlers[:] = [handler]
    root.setLevel(level_of(level) or logging.ERROR)
    root.propagate = False
