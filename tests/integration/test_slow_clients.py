"""Slow and greedy clients (issue 3, sections 3-5, "How it is checked": slow-client tests).

- 1,000 slowloris connections, one byte a second, are all closed at readTimeout
  while a normal client keeps getting fast answers.
- 100 clients reading a 50 MiB response at about 64 KiB/s keep Turnout's RSS
  under 100 MiB above its idle baseline (reads from the backend are paused, never
  accumulated).
- A reader that stops reading while a large response waits is disconnected
  after writeTimeout; one that reads slowly but steadily is not.
- maxConnections refuses connections past the limit, without spinning, while the
  connections already open keep working.
- At the end of the module Turnout is back to its baseline: descriptors, tasks,
  client connections and upstream connections (after the idle pool is swept).

Every figure is printed (``pytest -s``) so a run shows what was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    BackendProcess,
    ResponseReader,
    Turnout,
    connect,
    dynamic_for,
    get,
    read_head,
    wait_until,
)

READ_TIMEOUT = 2.0
WRITE_TIMEOUT = 2.0
SLOWLORIS = 1000
READERS = 100
BIG = 50 * 1024 * 1024
MiB = 1024 * 1024


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@pytest.fixture(scope="module")
def big_backend() -> Iterator[BackendProcess]:
    # 50 MiB at full speed: whatever the client does not take, Turnout must not hold.
    process = BackendProcess(
        "big", "stream", "--size", str(BIG), "--piece", "65536", "--every", "0"
    )
    yield process
    process.stop()


def _start(tmp_path_factory, backend: BackendProcess, name: str, extra: str) -> Turnout:
    workdir: Path = tmp_path_factory.mktemp(f"turnout-{name}")
    transport = (
        "[http.serversTransports.t]\nmaxIdleConnsPerHost = 200\n"
        '[http.serversTransports.t.forwardingTimeouts]\nidleConnTimeout = "1s"\n'
    )
    started = Turnout(
        workdir,
        dynamic_for(backend.url, balancer='serversTransport = "t"', extra=transport),
        entrypoint_extra=extra,
    ).start()
    time.sleep(0.3)  # the start-up port probe has come and gone
    started.baseline = started.stats()  # type: ignore[attr-defined]
    print(f"{name} idle baseline:", started.baseline)  # type: ignore[attr-defined]
    return started


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, big_backend) -> Iterator[Turnout]:
    """Turnout with readTimeout (and no writeTimeout, Traefik's default)."""
    _raise_fd_limit(4 * SLOWLORIS)  # inherited by Turnout, needed by the test too
    started = _start(
        tmp_path_factory,
        big_backend,
        "read",
        f'transport.respondingTimeouts.readTimeout = "{READ_TIMEOUT}s"',
    )
    yield started
    assert started.stop() == 0, started.stderr()


@pytest.fixture(scope="module")
def write_limited(tmp_path_factory, big_backend) -> Iterator[Turnout]:
    """Turnout with writeTimeout."""
    started = _start(
        tmp_path_factory,
        big_backend,
        "write",
        f'transport.respondingTimeouts.writeTimeout = "{WRITE_TIMEOUT}s"',
    )
    yield started
    assert started.stop() == 0, started.stderr()


# -- slowloris ---------------------------------------------------------------------------


async def _slowloris(port: int, opened: list[float], closed: list[float | None], index: int):
    # Taken before connecting: on a starved loop the connect completes late, and a
    # time taken after it would make a connection closed on time look closed early.
    opened[index] = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    trickle = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"z" * 60
    sent = 0

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError, OSError):
            while sent < len(trickle):
                writer.write(trickle[sent : sent + 1])
                sent += 1
                await asyncio.sleep(1)

    sender = asyncio.ensure_future(send())
    answer = b""
    try:
        while True:
            data = await reader.read(4096)
            if not data:
                break
            answer += data
    except (ConnectionError, OSError):
        pass
    closed[index] = time.monotonic()
    sender.cancel()
    writer.close()
    return answer


async def _normal_client(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        latencies.append(time.monotonic() - began)
        writer.close()
        await asyncio.sleep(0.05)


async def _slowloris_run(port: int) -> dict:
    opened = [0.0] * SLOWLORIS
    closed: list[float | None] = [None] * SLOWLORIS
    latencies: list[float] = []
    stop = asyncio.Event()
    normal = asyncio.ensure_future(_normal_client(port, stop, latencies))
    tasks = []
    for start in range(0, SLOWLORIS, 100):  # in waves, so the listen backlog keeps up
        for index in range(start, start + 100):
            tasks.append(asyncio.ensure_future(_slowloris(port, opened, closed, index)))
        await asyncio.sleep(0.02)
    answers = await asyncio.wait_for(asyncio.gather(*tasks), READ_TIMEOUT + 8)
    stop.set()
    await normal
    lifetimes = sorted(c - o for o, c in zip(opened, closed, strict=True) if c is not None)
    return {
        "closed": sum(1 for c in closed if c is not None),
        "shortest": lifetimes[0],
        "longest": lifetimes[-1],
        "answers": {a.split(b"\r\n", 1)[0] for a in answers},
        "requests": len(latencies),
        "p50": sorted(latencies)[len(latencies) // 2],
        "max": max(latencies),
    }


def test_1000_slowloris_connections_are_closed_at_read_timeout(proxy):
    result = asyncio.run(_slowloris_run(proxy.port))
    print("slowloris:", result)
    assert result["closed"] == SLOWLORIS
    # Closed at readTimeout: not before (the lifetimes measured here include the
    # connect, so they are a little longer than the real ones), and at most a
    # sweep (250 ms) plus slack after.
    # The slack is wide because the 1,000 clients run in this test's own loop:
    # on a loaded machine they see the closes late (3.3 s was seen in CI-like
    # runs beside other work), while a missed deadline would mean the next
    # timeout, minutes later.
    assert result["shortest"] >= READ_TIMEOUT - 0.05, result
    assert result["longest"] <= READ_TIMEOUT + 2.0, result
    assert result["answers"] <= {b"HTTP/1.1 408 Request Timeout", b""}, result["answers"]
    # Meanwhile an ordinary client was served, and fast.
    assert result["requests"] >= 20, result
    assert result["max"] < 0.5, result
    assert wait_until(lambda: proxy.stats()["connections"]["web"] == 0, 3)


# -- 100 slow readers of a 50 MiB response -------------------------------------------------


def _open_readers(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        socks.append(sock)
    return socks


def _read_at_rate(socks, seconds: float, rate: int, on_tick=None) -> tuple[list[int], list[bool]]:
    """Read from every socket at about ``rate`` bytes/s each; (bytes read, closed) per socket."""
    received = [0] * len(socks)
    closed = [False] * len(socks)
    for sock in socks:
        sock.setblocking(False)
    tick = 0.1
    budget = int(rate * tick)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        for index, sock in enumerate(socks):
            if closed[index]:
                continue
            want = budget
            try:
                while want > 0:
                    data = sock.recv(want)
                    if not data:
                        closed[index] = True
                        break
                    received[index] += len(data)
                    want -= len(data)
            except BlockingIOError:
                pass
            except ConnectionError:
                closed[index] = True
        if on_tick is not None:
            on_tick()
        time.sleep(max(0.0, tick - (time.monotonic() - began)))
    return received, closed


def test_100_slow_readers_of_50_mib_keep_rss_bounded(proxy):
    baseline_kib = proxy.baseline["rss_kib"]
    samples: list[int] = []
    socks = _open_readers(proxy.port, READERS)
    try:
        received, closed = _read_at_rate(
            socks, 6.0, 64 * 1024, on_tick=lambda: samples.append(proxy.rss() // 1024)
        )
        peak_kib = max(samples)
        stats = proxy.stats()
    finally:
        for sock in socks:
            sock.close()
    growth_mib = (peak_kib - baseline_kib) / 1024
    rates = sorted(r / 6.0 / 1024 for r in received)
    print(
        f"slow readers: RSS idle {baseline_kib / 1024:.1f} MiB, peak {peak_kib / 1024:.1f} MiB "
        f"(+{growth_mib:.1f} MiB for {READERS} x 50 MiB); per-reader rate "
        f"{rates[0]:.0f}..{rates[-1]:.0f} KiB/s; stats {stats}"
    )
    assert not any(closed), "a slow but steady reader was cut"
    assert stats["connections"]["web"] == READERS
    # The readers really were reading (well under 50 MiB each, so the bound matters).
    assert rates[0] > 30, rates[:5]
    assert max(received) < BIG // 4
    assert growth_mib < 100, f"Turnout grew {growth_mib:.1f} MiB above its idle RSS"


# -- a reader that stops -----------------------------------------------------------------


def test_reader_that_stops_is_disconnected_after_write_timeout(write_limited):
    proxy = write_limited
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", proxy.port))
    with sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        stopped = time.monotonic()  # from here on, nothing is read
        assert wait_until(lambda: proxy.stats()["connections"]["web"] == 1, 2)
        gone = wait_until(lambda: proxy.stats()["connections"]["web"] == 0, WRITE_TIMEOUT + 3)
        elapsed = time.monotonic() - stopped
        assert gone, "a client that stopped reading is still connected"
        # Buffers fill within moments, then writeTimeout (2 s) runs, checked every 250 ms;
        # the stall measured here starts before the real one, so it is never shorter.
        assert WRITE_TIMEOUT - 0.05 <= elapsed <= WRITE_TIMEOUT + 1.5, elapsed
        sock.settimeout(5)
        total = 0
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(1 << 20):
                total += len(chunk)
    print(f"stopped reader: cut after {elapsed:.2f} s having been sent {total / MiB:.2f} MiB")
    assert total < BIG // 10, "the response was not cut short"
    assert wait_until(lambda: proxy.stats()["upstream_open"] == 0, 3), proxy.stats()


def test_slow_but_steady_reader_is_not_cut_by_write_timeout(write_limited):
    # writeTimeout bounds a stall; a client taking 64 KiB/s never stalls for 2 s.
    proxy = write_limited
    socks = _open_readers(proxy.port, 5)
    counts: list[int] = []
    try:
        received, _ = _read_at_rate(
            socks,
            2.5 * WRITE_TIMEOUT,
            64 * 1024,
            on_tick=lambda: counts.append(proxy.stats()["connections"]["web"]),
        )
    finally:
        for sock in socks:
            sock.close()
    print(
        f"steady readers: connections seen {counts[::5]}, KiB read {[r // 1024 for r in received]}"
    )
    assert min(received) > 2.5 * WRITE_TIMEOUT * 40 * 1024, received
    assert min(counts[5:]) == 5, f"Turnout dropped steady readers: connections {counts}"


# -- maxConnections ----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _refused(port: int) -> bool:
    """True if a new connection gets no answer at all: reset, closed or never accepted."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), 1)
    except OSError:
        return True
    with sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            sock.settimeout(1)
            return sock.recv(1024) == b""
        except (ConnectionError, TimeoutError):
            return True


def test_max_connections_refuses_extra_connections_while_open_ones_work(backend, turnout):
    server = backend()
    limited = turnout(dynamic_for(server.url), entrypoint_extra="transport.maxConnections = 50")
    time.sleep(0.3)
    assert wait_until(lambda: limited.stats()["connections"]["web"] == 0, 2)
    kept = [connect(limited.port) for _ in range(50)]
    try:
        readers = [ResponseReader(sock) for sock in kept]
        for sock, reader in zip(kept, readers, strict=True):
            sock.sendall(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
            assert reader.read().status == 200
        cpu_before = _cpu_seconds(limited.pid)
        began = time.monotonic()
        refused = sum(_refused(limited.port) for _ in range(100))
        time.sleep(1)
        cpu = _cpu_seconds(limited.pid) - cpu_before
        wall = time.monotonic() - began
        print(f"maxConnections: {refused}/100 refused; turnout CPU {cpu:.2f} s over {wall:.1f} s")
        assert refused == 100
        assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.1f} s: a spinning accept loop?"
        # The 50 open connections still work, and none was dropped to make room.
        for sock, reader in zip(kept, readers, strict=True):
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            assert reader.read().status == 200
        assert limited.stats()["connections"]["web"] == 50
        # A slot freed is a slot available again.
        kept.pop().close()
        assert wait_until(lambda: limited.stats()["connections"]["web"] == 49, 2)
        assert get(limited.port, "/again").status == 200
    finally:
        for sock in kept:
            sock.close()
    targets = [r.target for r in server.requests]
    assert targets.count("/before") == 50 and targets.count("/after") == 50
    assert "/" not in targets, "a refused connection's request reached the backend"


# -- no leaks: the last test of the module -------------------------------------------------


def _back_to_baseline(proxy: Turnout, timeout: float = 5.0) -> tuple[bool, dict, dict]:
    baseline = proxy.baseline  # type: ignore[attr-defined]
    # Idle pooled connections are closed after idleConnTimeout (1 s) by the sweeper.
    deadline = time.monotonic() + timeout
    while True:
        stats = proxy.stats()
        back = (
            stats["fds"] <= baseline["fds"]
            and stats["tasks"] <= baseline["tasks"]
            and stats["connections"] == {"web": 0}
            and stats["upstream_open"] == 0
            and stats["upstream_idle"] == 0
        )
        if back or time.monotonic() > deadline:
            return back, stats, baseline
        time.sleep(0.2)


def test_module_leaves_turnout_at_its_baseline(proxy, write_limited):
    for name, started in (("read", proxy), ("write", write_limited)):
        back, stats, baseline = _back_to_baseline(started)
        print(f"{name} module end:", stats, "baseline:", baseline)
        assert back, f"{name}: not back to baseline {baseline}: {stats}"
        assert "Traceback" not in started.stderr()
        assert get(started.port, "/small").status == 200  # and it still answers
