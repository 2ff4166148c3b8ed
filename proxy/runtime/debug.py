"""Resource counters for leak hunting: ``kill -USR1 <pid>`` prints them.

One JSON line on stderr, prefixed ``turnout-stats``: open file descriptors,
asyncio tasks, client connections per entry point (HTTP and TCP; the TCP ones
and their splice pipes also on their own; UDP sessions on /udp entry points,
with their counters under "udp"), upstream connections
(open and idle), resident memory, and the objects the garbage collector has
yet to look at (``gc_pending``: a number that grows with traffic means
something makes reference cycles per request). Tests read it to check that a
module of traffic left nothing behind; an operator reads it at 3 a.m. for the
same reason.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.runtime.entrypoint import EntryPoint
    from proxy.runtime.snapshot import PoolRegistry
    from proxy.udp.server import UdpEntryPoint

PREFIX = "turnout-stats "


def _rss_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def stats(
    entrypoints: dict[str, EntryPoint | UdpEntryPoint], pools: PoolRegistry
) -> dict[str, Any]:
    upstream_open = 0
    upstream_idle = 0
    for pool in pools.all():
        upstream_open += len(pool.connections)
        upstream_idle += len(pool.idle)
    from proxy.tcp.front import TcpFront
    from proxy.tcp.splice import open_pipes

    tcp = sum(
        1 for e in entrypoints.values() for conn in e.connections if isinstance(conn, TcpFront)
    )
    udp = {name: e.counters() for name, e in entrypoints.items() if hasattr(e, "counters")}
    return {
        "fds": _open_fds(),
        "tcp_connections": tcp,
        "tcp_pipes": open_pipes(),
        # Per /udp entry point: open sessions (also in "connections"), drops by cause.
        "udp": udp,
        "tasks": len(asyncio.all_tasks()),
        "connections": {name: len(e.connections) for name, e in entrypoints.items()},
        "upstream_open": upstream_open,
        "upstream_idle": upstream_idle,
        "rss_kib": _rss_kib(),
        # Objects allocated and not freed since the last young-generation collection,
        # and how many collections ran: what is freed by reference counting alone
        # never shows here.
        "gc_pending": gc.get_count()[0],
        "gc_collections": sum(generation["collections"] for generation in gc.get_stats()),
    }


def dump(entrypoints: dict[str, EntryPoint | UdpEntryPoint], pools: PoolRegistry) -> None:
    print(
        PREFIX + json.dumps(stats(entrypoints, pools), sort_keys=True), file=sys.stderr, flush=True
    )
