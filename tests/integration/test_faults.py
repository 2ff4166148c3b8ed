"""Faulty backends as real processes (issue 3, "How it is checked": fault tests).

- Backend processes killed with SIGKILL in the middle of 200 concurrent streamed
  responses: every client on a killed backend sees its connection end (truncated)
  within 1 s, the streams on the surviving backend go on, and Turnout's open
  descriptors are back to their baseline within 5 s (``turnout-stats``).
- A backend that accepts and never answers: 504 at ``responseHeaderTimeout``.
- A backend whose listen backlog is full, so a connect never completes: 504 at
  ``dialTimeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import (
    BackendProcess,
    ResponseReader,
    connect,
    dynamic_for,
    get,
    wait_until,
)

STREAMS = 200


@pytest.fixture
def backend_process() -> Iterator[Callable[..., BackendProcess]]:
    started: list[BackendProcess] = []

    def make(name: str, mode: str = "stream", *options: str) -> BackendProcess:
        process = BackendProcess(name, mode, *options)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def settle(proxy, baseline: dict, timeout: float = 5.0) -> tuple[bool, dict]:
    """Wait until Turnout's descriptors, connections and tasks are back to baseline."""
    deadline = time.monotonic() + timeout
    while True:
        stats = proxy.stats()
        if (
            stats["fds"] <= baseline["fds"]
            and sum(stats["connections"].values()) == 0
            and stats["tasks"] <= baseline["tasks"]
        ):
            return True, stats
        if time.monotonic() > deadline:
            return False, stats
        time.sleep(0.1)


# -- backends killed mid-response ----------------------------------------------------------


class Stream:
    __slots__ = ("backend", "ended", "path", "reader", "received", "writer")

    def __init__(self, path: str) -> None:
        self.path = path
        self.backend = ""
        self.received = 0
        self.ended: float | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None


async def _open_stream(port: int, stream: Stream) -> None:
    stream.reader, stream.writer = await asyncio.open_connection("127.0.0.1", port)
    stream.writer.write(f"GET {stream.path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    head = await stream.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-backend:"):
            stream.backend = line.split(b":", 1)[1].strip().decode()


async def _drain(stream: Stream) -> None:
    assert stream.reader is not None
    try:
        while True:
            data = await stream.reader.read(65536)
            if not data:
                break
            stream.received += len(data)
    except (ConnectionError, OSError):
        pass
    stream.ended = time.monotonic()


async def _kill_mid_streams(port: int, victim: BackendProcess) -> dict:
    streams = [Stream("/stream" if i % 2 else "/chunked") for i in range(STREAMS)]
    await asyncio.wait_for(asyncio.gather(*(_open_stream(port, stream) for stream in streams)), 20)
    readers = [asyncio.ensure_future(_drain(stream)) for stream in streams]
    # Every stream is flowing before the kill.
    deadline = time.monotonic() + 10
    while any(s.received == 0 for s in streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    flowing = sum(1 for s in streams if s.received > 0)
    killed_at = time.monotonic()
    victim.kill()
    await asyncio.sleep(1.5)
    on_victim = [s for s in streams if s.backend == victim.name]
    survivors = [s for s in streams if s.backend != victim.name]
    before = {id(s): s.received for s in survivors}
    await asyncio.sleep(0.5)
    survivors_moving = sum(1 for s in survivors if s.ended is None and s.received > before[id(s)])
    hung = [s for s in on_victim if s.ended is None]
    late = [
        s.ended - killed_at for s in on_victim if s.ended is not None and s.ended - killed_at > 1
    ]
    for stream in streams:
        assert stream.writer is not None
        stream.writer.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "flowing": flowing,
        "on_victim": len(on_victim),
        "survivors": len(survivors),
        "survivors_moving": survivors_moving,
        "hung": len(hung),
        "late": late,
        "slowest": max((s.ended - killed_at for s in on_victim if s.ended), default=0.0),
    }


def test_backend_killed_during_200_streams(backend_process, turnout):
    victim = backend_process("victim")
    survivor = backend_process("survivor")
    proxy = turnout(dynamic_for(victim.url, survivor.url))
    time.sleep(0.3)  # the start-up port probe has come and gone
    baseline = proxy.stats()
    result = asyncio.run(_kill_mid_streams(proxy.port, victim))
    print("kill mid-stream:", result)
    assert result["flowing"] == STREAMS, result
    assert result["on_victim"] == STREAMS // 2 and result["survivors"] == STREAMS // 2, result
    assert result["hung"] == 0, f"{result['hung']} clients of the killed backend still hang"
    assert result["late"] == [], f"clients cut later than 1 s after the kill: {result['late']}"
    assert result["survivors_moving"] == STREAMS // 2, result
    settled, stats = settle(proxy, baseline)
    print("baseline", baseline, "after", stats)
    assert settled, f"turnout did not come back to baseline {baseline}: {stats}"
    assert stats["upstream_open"] == 0, stats
    # Turnout still serves from the survivor (and answers 502 for the dead one).
    statuses = {get(proxy.port, "/small").status for _ in range(4)}
    assert 200 in statuses and statuses <= {200, 502}, statuses
    assert "Traceback" not in proxy.stderr()


# -- a backend that accepts and never answers ----------------------------------------------


def transport_with(**timeouts: str) -> dict[str, str]:
    keys = "\n".join(f'{key} = "{value}"' for key, value in timeouts.items())
    return {
        "balancer": 'serversTransport = "t"',
        "extra": f"[http.serversTransports.t.forwardingTimeouts]\n{keys}\n",
    }


def test_backend_that_never_answers_is_504_at_response_header_timeout(backend_process, turnout):
    silent = backend_process("silent", mode="silent")
    proxy = turnout(dynamic_for(silent.url, **transport_with(responseHeaderTimeout="1500ms")))
    baseline = proxy.stats()
    for _ in range(2):
        started = time.monotonic()
        response = get(proxy.port)
        elapsed = time.monotonic() - started
        assert response.status == 504, response
        # The sweeper runs every 250 ms: at most that late.
        assert 1.45 <= elapsed < 2.0, f"504 after {elapsed:.2f} s, configured 1.5 s"
    settled, stats = settle(proxy, baseline)
    assert settled, (baseline, stats)
    assert stats["upstream_open"] == 0, "the silent connection was kept"


def test_backend_that_never_answers_a_post_is_504_too(backend_process, turnout):
    silent = backend_process("silent", mode="silent")
    proxy = turnout(dynamic_for(silent.url, **transport_with(responseHeaderTimeout="1s")))
    with connect(proxy.port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        response = ResponseReader(sock).read(5)
        elapsed = time.monotonic() - started
    assert response.status == 504
    assert 0.95 <= elapsed < 1.5, elapsed


# -- a backend that never accepts -------------------------------------------------------


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listening socket whose accept queue is full: a new connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    while True:  # fill the queue until a connect no longer completes
        sock = socket.socket()
        sock.settimeout(0.3)
        try:
            sock.connect(("127.0.0.1", port))
        except TimeoutError:
            sock.close()
            break
        held.append(sock)
        assert len(held) < 64, "the accept queue never filled"
    yield port
    for sock in held:
        sock.close()
    listener.close()


def test_backend_that_never_accepts_is_504_at_dial_timeout(full_backlog, turnout):
    proxy = turnout(
        dynamic_for(f"http://127.0.0.1:{full_backlog}", **transport_with(dialTimeout="1s"))
    )
    baseline = proxy.stats()
    for _ in range(2):
        started = time.monotonic()
        response = get(proxy.port)
        elapsed = time.monotonic() - started
        assert response.status == 504, response
        assert response.body == b"Gateway Timeout\n"
        assert 0.95 <= elapsed < 1.5, f"504 after {elapsed:.2f} s, dialTimeout 1 s"
    settled, stats = settle(proxy, baseline)
    assert settled, (baseline, stats)
    assert stats["upstream_open"] == 0


def test_dial_timeout_while_other_clients_are_served(full_backlog, backend_process, turnout):
    # One stuck dial must not hold up anyone else on the same entry point.
    good = backend_process("good")
    dynamic = (
        dynamic_for(f"http://127.0.0.1:{full_backlog}", **transport_with(dialTimeout="2s"))
        + '[http.routers.good]\nrule = "PathPrefix(`/good`)"\nservice = "good"\n'
        + f'[[http.services.good.loadBalancer.servers]]\nurl = "{good.url}"\n'
    )
    proxy = turnout(dynamic)
    stuck = connect(proxy.port)
    with contextlib.closing(stuck):
        stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: a\r\n\r\n")
        started = time.monotonic()
        timings = []
        for _ in range(10):
            begun = time.monotonic()
            assert get(proxy.port, "/good").status == 200
            timings.append(time.monotonic() - begun)
        assert time.monotonic() - started < 1.5
        assert max(timings) < 0.2, timings
        response = ResponseReader(stuck).read(5)
    assert response.status == 504
    assert wait_until(lambda: proxy.stats()["connections"]["web"] == 0, 3)
