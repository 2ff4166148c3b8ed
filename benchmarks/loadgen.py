"""Bundled HTTP/1.1 load generator: uvloop + httptools, N connections, closed loop.

Each connection sends a GET, reads the whole response (httptools response parser,
body skipped without copies), records the latency in a compact histogram and sends
the next request. With `--close` every request uses a new connection. As in wrk,
latency runs from the write of the request (a connect is not included). Work is
split over `--processes` worker processes (default 1), each printing a JSON record
that the parent merges.

Run: python -m benchmarks.loadgen http://127.0.0.1:PORT/ -c 50 -d 10 [-p 1] [--close]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from benchmarks.procs import LOOPBACK, python_env
from benchmarks.record import HIST_BUCKETS, LoadResult, bucket_index, merge, percentile, sparse

RECONNECT_DELAY = 0.01


class Client(asyncio.Protocol):
    """One client connection; sends the next request from the response callback."""

    __slots__ = ("gen", "parser", "start", "transport")

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.start = 0  # perf_counter_ns of the request in flight, 0 when idle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.gen.clients.add(self)
        if self.gen.running:
            # Like wrk, latency runs from the write: the connect is not included.
            self.start = time.perf_counter_ns()
            transport.write(self.gen.request)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.errors += 1
            self.start = 0
            if self.transport is not None:
                self.transport.abort()

    def on_message_complete(self) -> None:
        g = self.gen
        now = time.perf_counter_ns()
        g.hist[bucket_index((now - self.start) // 1000)] += 1
        g.requests += 1
        status = self.parser.get_status_code()
        if status < 200 or status >= 400:
            g.non_2xx += 1
        t = self.transport
        if t is None:
            return
        if g.running and g.keepalive and self.parser.should_keep_alive():
            self.start = now
            t.write(g.request)
        else:
            self.start = 0
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        g = self.gen
        g.clients.discard(self)
        self.transport = None
        if self.start and g.running:
            g.errors += 1  # closed with a request in flight
        self.start = 0
        if g.running:
            g.open()


class Generator:
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        connections: int,
        duration: float,
        keepalive: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.connections = connections
        self.duration = duration
        self.keepalive = keepalive
        self.timeout_ns = int(timeout * 1e9)
        head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if not keepalive:
            head += "Connection: close\r\n"
        self.request = (head + "\r\n").encode("latin-1")
        self.hist = [0] * HIST_BUCKETS
        self.requests = 0
        self.errors = 0
        self.timeouts = 0
        self.non_2xx = 0
        self.running = False
        self.clients: set[Client] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            try:
                await loop.create_connection(partial(Client, self), self.host, self.port)
                return
            except OSError:
                self.errors += 1
                await asyncio.sleep(RECONNECT_DELAY)

    async def _watchdog(self) -> None:
        while self.running:
            await asyncio.sleep(0.2)
            now = time.perf_counter_ns()
            for c in list(self.clients):
                if c.start and now - c.start > self.timeout_ns:
                    self.timeouts += 1
                    self.errors += 1
                    c.start = 0
                    if c.transport is not None:
                        c.transport.abort()

    async def run(self) -> dict[str, Any]:
        self.running = True
        t0 = time.perf_counter()
        for _ in range(self.connections):
            self.open()
        watchdog = asyncio.get_running_loop().create_task(self._watchdog())
        await asyncio.sleep(self.duration)
        self.running = False
        elapsed = time.perf_counter() - t0
        watchdog.cancel()
        for c in list(self.clients):
            if c.transport is not None:
                c.transport.abort()
        for t in list(self.tasks):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(watchdog, *self.tasks, return_exceptions=True)
        await asyncio.sleep(0)
        return {
            "requests": self.requests,
            "duration_s": elapsed,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "non_2xx": self.non_2xx,
            "hist": sparse(self.hist),
        }


def _split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"only http://host:port/path URLs are supported, got {url!r}")
    if u.hostname not in (LOOPBACK, "localhost"):
        raise ValueError(f"refusing to load a non-loopback address: {u.hostname}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


def worker(url: str, connections: int, duration: float, keepalive: bool, timeout: float) -> dict:
    host, port, path = _split_url(url)
    gen = Generator(host, port, path, connections, duration, keepalive, timeout)
    return uvloop.run(gen.run())


def combine(parts: list[dict[str, Any]]) -> LoadResult:
    hist = merge([{int(k): int(v) for k, v in p["hist"].items()} for p in parts])
    requests = sum(int(p["requests"]) for p in parts)
    rps = sum(p["requests"] / p["duration_s"] for p in parts if p["duration_s"] > 0)
    return LoadResult(
        tool="bundled",
        requests=requests,
        duration_s=max((float(p["duration_s"]) for p in parts), default=0.0),
        requests_per_s=rps,
        p50_us=percentile(hist, 50),
        p99_us=percentile(hist, 99),
        errors=sum(int(p["errors"]) for p in parts),
        non_2xx=sum(int(p["non_2xx"]) for p in parts),
        extra={
            "processes": len(parts),
            "timeouts": sum(int(p["timeouts"]) for p in parts),
            "p90_us": percentile(hist, 90),
            "p999_us": percentile(hist, 99.9),
        },
    )


def run(
    url: str,
    connections: int = 50,
    duration: float = 10.0,
    processes: int = 1,
    keepalive: bool = True,
    timeout: float = 5.0,
) -> LoadResult:
    """Run `processes` worker processes against `url` and merge their records."""
    _split_url(url)  # validate before spawning anything
    processes = max(1, min(processes, connections))
    shares = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    procs: list[subprocess.Popen[str]] = []
    try:
        for n in shares:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--worker",
                url,
                "-c",
                str(n),
                "-d",
                str(duration),
                "--timeout",
                str(timeout),
            ]
            if not keepalive:
                cmd.append("--close")
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=python_env(),
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + duration + 30.0
        parts = []
        for p in procs:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if p.returncode != 0:
                raise RuntimeError(f"bundled loadgen worker failed ({p.returncode}): {err.strip()}")
            parts.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
    return combine(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    ap.add_argument("-p", "--processes", type=int, default=1)
    ap.add_argument("--close", action="store_true", help="new connection per request")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the result record as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.connections <= 10000 or not 0 < args.duration <= 3600:
        ap.error("need 1 <= connections <= 10000 and 0 < duration <= 3600")
    if args.worker:
        out = worker(args.url, args.connections, args.duration, not args.close, args.timeout)
        sys.stdout.write(json.dumps(out))
        return
    res = run(
        args.url, args.connections, args.duration, args.processes, not args.close, args.timeout
    )
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        print(
            f"{res.requests} requests in {res.duration_s:.2f}s: {res.requests_per_s:,.0f} req/s, "
            f"p50 {res.p50_us / 1000:.3f} ms, p99 {res.p99_us / 1000:.3f} ms, "
            f"errors {res.errors}, non-2xx {res.non_2xx}"
        )


if __name__ == "__main__":
    main()
