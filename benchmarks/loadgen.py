"""Bundled load generator: uvloop, N connections, closed loop, one thing in flight each.

Modes (the URL's scheme chooses):
- http://  HTTP/1.1 keep-alive requests (GET, or POST with `--body-size` bytes), the
           response read with httptools' parser (body skipped without copies); with
           `--close` every request uses a new connection; `--host-header` sets Host.
- ws://    a WebSocket handshake per connection (checked: 101 and the accept key),
           then `--message-size`-byte binary messages, each waiting for its echo.
- tcp://   `--tcp echo`: `--message-size`-byte messages, each waiting for its echo;
           `--tcp bulk`: a 1-byte request, then `--message-size` bytes back.

Latencies go in a compact log-linear histogram; as in wrk they run from the write
of the request or message (a connect is not included). Work is split over
`--processes` worker processes (default 1), each printing a JSON record that the
parent merges.

Run: python -m benchmarks.loadgen http://127.0.0.1:PORT/ -c 50 -d 10 [-p 1] [--close]
     python -m benchmarks.loadgen http://127.0.0.1:PORT/upload --method POST --body-size 65536
     python -m benchmarks.loadgen ws://127.0.0.1:PORT/ --message-size 64
     python -m benchmarks.loadgen tcp://127.0.0.1:PORT --tcp echo --message-size 64
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from benchmarks.procs import LOOPBACK, python_env
from benchmarks.record import HIST_BUCKETS, LoadResult, bucket_index, merge, percentile, sparse
from benchmarks.ws_backend import accept_key, client_frame, parse_head, server_frame_size

RECONNECT_DELAY = 0.01
MODES = ("http", "ws", "tcp-echo", "tcp-bulk")

BULK_BLOCK = 1 << 20  # the bundled bulk backend answers each request byte with 1 MiB


def bulk_request(size: int) -> bytes:
    """The request bytes that make the bulk backend send ``size`` bytes back."""
    return b"g" * max(1, size // BULK_BLOCK)


@dataclass(slots=True)
class Spec:
    """What one worker process sends. JSON-able: the parent passes it to workers."""

    mode: str  # http | ws | tcp-echo | tcp-bulk
    host: str
    port: int
    path: str = "/"
    connections: int = 50
    duration: float = 10.0
    keepalive: bool = True
    method: str = "GET"
    body_size: int = 0
    host_header: str | None = None
    message_size: int = 64
    timeout: float = 5.0

    def http_request(self) -> bytes:
        host = self.host_header or f"{self.host}:{self.port}"
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}\r\n"
        if self.body_size:
            head += (
                f"Content-Type: application/octet-stream\r\nContent-Length: {self.body_size}\r\n"
            )
        if not self.keepalive:
            head += "Connection: close\r\n"
        return (head + "\r\n").encode("latin-1") + b"x" * self.body_size


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a loopback http://, ws:// or tcp:// URL."""
    u = urlsplit(url)
    if u.scheme not in ("http", "ws", "tcp") or not u.hostname:
        raise ValueError(f"only http://, ws:// and tcp://host:port URLs are supported, got {url!r}")
    if u.hostname not in (LOOPBACK, "localhost"):
        raise ValueError(f"refusing to load a non-loopback address: {u.hostname}")
    if u.port is None and u.scheme == "tcp":
        raise ValueError(f"tcp:// URLs need a port: {url!r}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.scheme, u.hostname, u.port or 80, path


class _Client(asyncio.Protocol):
    """Base: one connection with at most one request (message) in flight.

    `start` is the perf_counter_ns of the request in flight (0 when idle); the
    generator's watchdog aborts connections whose request is older than the timeout.
    """

    __slots__ = ("gen", "start", "transport")

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.start = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.gen.clients.add(self)
        if self.gen.running:
            self.begin()
        else:
            transport.close()

    def begin(self) -> None:
        self.send()

    def send(self) -> None:
        raise NotImplementedError

    def done(self, ok: bool = True) -> int:
        """Record the completed request; return now (ns)."""
        g = self.gen
        now = time.perf_counter_ns()
        g.hist[bucket_index((now - self.start) // 1000)] += 1
        g.requests += 1
        if not ok:
            g.non_2xx += 1
        return now

    def fail(self) -> None:
        self.gen.errors += 1
        self.start = 0
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        g = self.gen
        g.clients.discard(self)
        self.transport = None
        if self.start and g.running:
            g.errors += 1  # closed with a request in flight
        self.start = 0
        if g.running:
            g.open()


class HttpClient(_Client):
    __slots__ = ("parser",)

    def __init__(self, gen: Generator) -> None:
        super().__init__(gen)
        self.parser = httptools.HttpResponseParser(self)

    def send(self) -> None:
        self.start = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(self.gen.payload)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail()

    def on_message_complete(self) -> None:
        g = self.gen
        status = self.parser.get_status_code()
        now = self.done(200 <= status < 400)
        t = self.transport
        if t is None:
            return
        if g.running and g.spec.keepalive and self.parser.should_keep_alive():
            self.start = now
            t.write(g.payload)
        else:
            self.start = 0
            t.close()


class StreamClient(_Client):
    """TCP echo / bulk and WebSocket messages: count `expect` bytes per round trip."""

    __slots__ = ("expect", "got", "handshake")

    def __init__(self, gen: Generator) -> None:
        super().__init__(gen)
        self.expect = gen.expect
        self.got = 0
        self.handshake: bytearray | None = None

    def begin(self) -> None:
        if self.gen.spec.mode == "ws":
            self.handshake = bytearray()
            assert self.transport is not None
            self.transport.write(self.gen.ws_handshake)
        else:
            self.send()

    def send(self) -> None:
        self.got = 0
        self.start = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(self.gen.payload)

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None:
            self._handshake(data)
            return
        if not self.start:
            self.fail()  # bytes nobody asked for
            return
        if self.got == 0 and self.gen.first_byte is not None and data[0] != self.gen.first_byte:
            self.fail()  # not the frame we expect (a close, a ping, a text frame...)
            return
        self.got += len(data)
        if self.got < self.expect:
            return
        if self.got > self.expect:
            self.fail()  # more than one answer per request: a protocol error
            return
        now = self.done()
        if self.gen.running:
            self.got = 0
            self.start = now
            assert self.transport is not None
            self.transport.write(self.gen.payload)
        else:
            self.start = 0

    def _handshake(self, data: bytes) -> None:
        assert self.handshake is not None
        self.handshake += data
        end = self.handshake.find(b"\r\n\r\n")
        if end < 0:
            if len(self.handshake) > 16384:
                self.fail()
            return
        line, headers = parse_head(bytes(self.handshake[:end]))
        rest = bytes(self.handshake[end + 4 :])
        self.handshake = None
        if not line.startswith(b"HTTP/1.1 101") or (
            headers.get(b"sec-websocket-accept") != self.gen.ws_accept
        ):
            self.gen.handshake_failures += 1
            self.fail()
            return
        self.send()
        if rest:
            self.data_received(rest)


class Generator:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.timeout_ns = int(spec.timeout * 1e9)
        self.first_byte: int | None = None
        self.ws_handshake = b""
        self.ws_accept = b""
        if spec.mode == "http":
            self.client_cls: type[_Client] = HttpClient
            self.payload = spec.http_request()
            self.expect = 0
        elif spec.mode == "ws":
            self.client_cls = StreamClient
            key = base64.b64encode(os.urandom(16))
            host = spec.host_header or f"{spec.host}:{spec.port}"
            self.ws_handshake = (
                (
                    f"GET {spec.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                ).encode()
                + b"Sec-WebSocket-Key: "
                + key
                + b"\r\n\r\n"
            )
            self.ws_accept = accept_key(key)
            self.payload = client_frame(b"m" * spec.message_size)
            self.expect = server_frame_size(spec.message_size)
            self.first_byte = 0x82  # FIN + binary
        elif spec.mode == "tcp-echo":
            self.client_cls = StreamClient
            self.payload = b"e" * spec.message_size
            self.expect = spec.message_size
        elif spec.mode == "tcp-bulk":
            self.client_cls = StreamClient
            self.payload = bulk_request(spec.message_size)
            self.expect = spec.message_size
        else:
            raise ValueError(f"unknown mode {spec.mode!r}")
        self.hist = [0] * HIST_BUCKETS
        self.requests = 0
        self.errors = 0
        self.timeouts = 0
        self.non_2xx = 0
        self.handshake_failures = 0
        self.running = False
        self.clients: set[_Client] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            try:
                await loop.create_connection(
                    partial(self.client_cls, self), self.spec.host, self.spec.port
                )
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
                    c.fail()

    async def run(self) -> dict[str, Any]:
        self.running = True
        t0 = time.perf_counter()
        for _ in range(self.spec.connections):
            self.open()
        watchdog = asyncio.get_running_loop().create_task(self._watchdog())
        await asyncio.sleep(self.spec.duration)
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
            "handshake_failures": self.handshake_failures,
            "hist": sparse(self.hist),
        }


def worker(spec: Spec) -> dict[str, Any]:
    return uvloop.run(Generator(spec).run())


def combine(parts: list[dict[str, Any]], spec: Spec | None = None) -> LoadResult:
    hist = merge([{int(k): int(v) for k, v in p["hist"].items()} for p in parts])
    requests = sum(int(p["requests"]) for p in parts)
    rps = sum(p["requests"] / p["duration_s"] for p in parts if p["duration_s"] > 0)
    extra: dict[str, Any] = {
        "processes": len(parts),
        "timeouts": sum(int(p["timeouts"]) for p in parts),
        "p90_us": percentile(hist, 90),
        "p999_us": percentile(hist, 99.9),
    }
    if spec is not None:
        extra["mode"] = spec.mode
        if spec.mode == "ws":
            extra["handshake_failures"] = sum(int(p.get("handshake_failures", 0)) for p in parts)
        if spec.mode in ("ws", "tcp-echo", "tcp-bulk"):
            extra["message_size"] = spec.message_size
        if spec.body_size:
            extra["request_body_size"] = spec.body_size
    return LoadResult(
        tool="bundled",
        requests=requests,
        duration_s=max((float(p["duration_s"]) for p in parts), default=0.0),
        requests_per_s=rps,
        p50_us=percentile(hist, 50),
        p99_us=percentile(hist, 99),
        errors=sum(int(p["errors"]) for p in parts),
        non_2xx=sum(int(p["non_2xx"]) for p in parts),
        extra=extra,
    )


def run_spec(spec: Spec, processes: int = 1, prefix: list[str] | None = None) -> LoadResult:
    """Run `processes` worker processes (command prefixed by `prefix`, e.g. taskset)."""
    processes = max(1, min(processes, spec.connections))
    shares = [
        spec.connections // processes + (1 if i < spec.connections % processes else 0)
        for i in range(processes)
    ]
    procs: list[subprocess.Popen[str]] = []
    try:
        for n in shares:
            part = Spec(**{**asdict(spec), "connections": n})
            cmd = [
                *(prefix or []),
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--worker",
                json.dumps(asdict(part)),
            ]
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
        deadline = time.monotonic() + spec.duration + 30.0
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
    return combine(parts, spec)


def make_spec(url: str, **kw: Any) -> Spec:
    """A Spec from a URL: http:// -> http, ws:// -> ws, tcp:// -> tcp-echo unless told."""
    scheme, host, port, path = parse_url(url)
    mode = kw.pop("mode", None) or {"http": "http", "ws": "ws", "tcp": "tcp-echo"}[scheme]
    return Spec(mode=mode, host=host, port=port, path=path, **kw)


def run(
    url: str,
    connections: int = 50,
    duration: float = 10.0,
    processes: int = 1,
    keepalive: bool = True,
    timeout: float = 5.0,
    **kw: Any,
) -> LoadResult:
    """Run against `url` (see make_spec for the other keywords) and merge the records."""
    spec = make_spec(
        url, connections=connections, duration=duration, keepalive=keepalive, timeout=timeout, **kw
    )
    return run_spec(spec, processes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("url", nargs="?", help="http://, ws:// or tcp://127.0.0.1:PORT[/path]")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    ap.add_argument("-p", "--processes", type=int, default=1)
    ap.add_argument("--close", action="store_true", help="new connection per request")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    ap.add_argument("--method", default="GET", help="HTTP method (default GET)")
    ap.add_argument("--body-size", type=int, default=0, help="request body bytes (HTTP)")
    ap.add_argument("--host-header", default=None, help="Host header (HTTP, WebSocket)")
    ap.add_argument(
        "--message-size",
        type=int,
        default=64,
        help="WebSocket / TCP echo message bytes; TCP bulk bytes per transfer (default 64)",
    )
    ap.add_argument("--tcp", choices=("echo", "bulk"), default="echo", help="tcp:// mode")
    ap.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the result record as JSON")
    args = ap.parse_args(argv)
    if args.worker:
        sys.stdout.write(json.dumps(worker(Spec(**json.loads(args.worker)))))
        return
    if not args.url:
        ap.error("a URL is required")
    if not 1 <= args.connections <= 20000 or not 0 < args.duration <= 3600:
        ap.error("need 1 <= connections <= 20000 and 0 < duration <= 3600")
    if not 0 <= args.body_size <= 1 << 30 or not 1 <= args.message_size <= 1 << 30:
        ap.error("--body-size and --message-size must be at most 1 GiB")
    try:
        spec = make_spec(
            args.url,
            mode=f"tcp-{args.tcp}" if args.url.startswith("tcp:") else None,
            connections=args.connections,
            duration=args.duration,
            keepalive=not args.close,
            timeout=args.timeout,
            method=args.method.upper(),
            body_size=args.body_size,
            host_header=args.host_header,
            message_size=args.message_size,
        )
    except ValueError as exc:
        ap.error(str(exc))
    res = run_spec(spec, args.processes)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        print(
            f"{res.requests} {'requests' if spec.mode == 'http' else 'messages'} in "
            f"{res.duration_s:.2f}s: {res.requests_per_s:,.0f}/s, "
            f"p50 {res.p50_us / 1000:.3f} ms, p99 {res.p99_us / 1000:.3f} ms, "
            f"errors {res.errors}, non-2xx {res.non_2xx}"
        )


if __name__ == "__main__":
    main()
