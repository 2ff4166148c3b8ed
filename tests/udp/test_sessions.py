"""Sessions and the listener in process, on real sockets: what flow control does.

A UDP socket's send buffer hardly ever fills on loopback, so the transport's
``pause_writing`` is called here by hand, as the transport calls it when its
queue grows: while paused, datagrams are dropped and counted, never queued.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from proxy.config.load import decode_dynamic
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import StaticConfig
from proxy.runtime.entrypoint import Clock
from proxy.runtime.snapshot import build_snapshot
from proxy.udp.server import UdpEntryPoint
from tests.udp.test_server import Echo


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.stop()


async def started(echo: Echo) -> UdpEntryPoint:
    config = EntryPointConfig(address="127.0.0.1:0/udp")
    static = StaticConfig(entry_points={"dns": config})
    dynamic = decode_dynamic(
        {
            "udp": {
                "routers": {"r": {"service": "echo"}},
                "services": {
                    "echo": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{echo.port}"}]}}
                },
            }
        },
        "dynamic.toml",
    )
    snapshot, issues = build_snapshot(dynamic, static, entrypoints=["dns"])
    assert issues == []
    loop = asyncio.get_running_loop()
    entrypoint = UdpEntryPoint("dns", config, Clock(loop.time), snapshot)
    await entrypoint.start(loop)
    return entrypoint


async def ask(sock: socket.socket, port: int, data: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock.sendto(data, ("127.0.0.1", port))
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 100), 0.5)
    except TimeoutError:
        return None


async def test_paused_writing_drops_and_counts_instead_of_queueing(echo: Echo) -> None:
    entrypoint = await started(echo)
    port = entrypoint.bound_port
    listener = entrypoint.listener
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        assert await ask(sock, port, b"one") == b"one"
        # Towards clients: the answer reaches Turnout and is dropped there.
        listener.pause_writing()
        assert await ask(sock, port, b"two") is None
        assert echo.received == 2
        assert listener.counters["congestion_dropped"] == 1
        listener.resume_writing()
        assert await ask(sock, port, b"three") == b"three"
        # Towards the server: dropped before it is sent.
        (session,) = entrypoint.connections
        session.pause_writing()
        assert await ask(sock, port, b"four") is None
        assert echo.received == 3
        assert listener.counters["congestion_dropped"] == 2
        session.resume_writing()
        assert await ask(sock, port, b"five") == b"five"
    for session in entrypoint.connections:
        session.shutdown()
    entrypoint.stop_accepting()
    await asyncio.sleep(0)
    assert entrypoint.counters()["sessions"] == 0
