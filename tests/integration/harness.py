"""Real processes and sockets for integration tests.

``Turnout`` starts the real ``turnout run`` in a subprocess on a free loopback
port with configuration files written to a temporary folder, and stops it by
its process id. ``Backend`` is an HTTP/1.1 server on its own event loop thread
that records every byte and every request it receives, so a test can assert
both what the client got and what reached the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

REPO = Path(__file__).resolve().parents[2]
# The line ``kill -USR1 <pid>`` makes Turnout print (proxy/runtime/debug.py).
STATS_PREFIX = "turnout-stats "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# -- Turnout ------------------------------------------------------------------


class Turnout:
    """A real ``turnout run`` process.

    ``dynamic`` is the file provider's file, or a dict of file name to content for
    ``providers.file.directory``. ``entrypoint_extra`` is written inside every
    ``[entryPoints.NAME]`` table, so it should use dotted keys
    (``transport.respondingTimeouts.readTimeout = "1s"``); ``provider_extra`` goes
    in ``[providers.file]``; ``static_extra`` is appended at the end and should
    start with a table header. ``launcher`` is a script run instead of
    ``python -m proxy.cli`` (with the same arguments), for tests that must add
    a faulty collaborator to a real process; the tracebacks that collaborator
    causes end with ``expected_traceback``, and ``stop()`` allows those only.
    """

    def __init__(
        self,
        workdir: Path,
        dynamic: str | dict[str, str],
        *,
        entrypoint_extra: str = "",
        provider_extra: str = "",
        static_extra: str = "",
        entrypoints: tuple[str, ...] = ("web",),
        launcher: Path | None = None,
        expected_traceback: str = "",
    ) -> None:
        self.workdir = workdir
        self.launcher = launcher
        self.expected_traceback = expected_traceback
        self.ports = {name: free_port() for name in entrypoints}
        self.port = self.ports[entrypoints[0]]
        if isinstance(dynamic, str):
            self.dynamic_path = workdir / "dynamic.toml"
            self.dynamic_path.write_text(dynamic)
            source = f'filename = "{self.dynamic_path}"'
        else:
            self.dynamic_path = workdir / "dynamic"
            self.dynamic_path.mkdir()
            for name, text in dynamic.items():
                (self.dynamic_path / name).write_text(text)
            source = f'directory = "{self.dynamic_path}"'
        lines = []
        for name, port in self.ports.items():
            lines += [f"[entryPoints.{name}]", f'address = "127.0.0.1:{port}"', entrypoint_extra]
        lines += [
            "[providers.file]",
            source,
            provider_extra,
            "[log]",
            'level = "DEBUG"',
            static_extra,
        ]
        self.static_path = workdir / "static.toml"
        self.static_path.write_text("\n".join(lines) + "\n")
        self.stderr_path = workdir / "turnout.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.signalled = False  # a test already asked it to stop

    def launch(self) -> Turnout:
        """Start the process without waiting for it to listen."""
        program = ["-m", "proxy.cli"] if self.launcher is None else [str(self.launcher)]
        self.process = subprocess.Popen(
            [sys.executable, *program, "run", "-c", str(self.static_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("wb"),
        )
        return self

    def start(self) -> Turnout:
        self.launch()
        assert self.process is not None
        try:
            for port in self.ports.values():
                wait_for_port(port)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"turnout did not start:\n{self.stderr()}") from None
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        """Resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Resource counters: send SIGUSR1 and parse the ``turnout-stats`` line it prints.

        Keys: ``fds``, ``tasks``, ``connections`` (per entry point), ``upstream_open``,
        ``upstream_idle``, ``rss_kib``, ``gc_pending``, ``gc_collections`` (see
        proxy/runtime/debug.py).
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        # Until Turnout has installed its handler, SIGUSR1 would kill it: wait
        # for the kernel to show the signal as caught.
        while not self._catches(signal.SIGUSR1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"turnout does not handle SIGUSR1:\n{self.stderr()}")
            time.sleep(0.01)
        before = self.stderr().count(STATS_PREFIX)
        # Not self.signal(): that one marks the process as asked to stop.
        self.process.send_signal(signal.SIGUSR1)
        while time.monotonic() < deadline:
            log = self.stderr()
            if log.count(STATS_PREFIX) > before:
                line, newline, _ = log[log.rindex(STATS_PREFIX) :].partition("\n")
                if newline:  # the whole line is there
                    return json.loads(line[len(STATS_PREFIX) :])
            time.sleep(0.01)
        raise AssertionError(f"no {STATS_PREFIX.strip()} line within {timeout} s:\n{log[-2000:]}")

    def _catches(self, signum: int) -> bool:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
        return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.signalled = True
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process still runs after timeout."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit code; an unhandled exception fails the test."""
        assert self.process is not None
        if self.process.poll() is None:
            if not self.signalled:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"turnout did not stop on SIGTERM:\n{self.stderr()}") from None
        log = self.stderr()
        expected = log.count(self.expected_traceback) if self.expected_traceback else 0
        assert log.count("Traceback") == expected and "Exception in callback" not in log, log
        return self.process.returncode

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# -- raw client helpers ------------------------------------------------------------


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes (or the timeout passes)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def wait_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bool, bytes]:
    """Whether the peer closed within timeout, and the bytes it sent before."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return True, b"".join(chunks)
            chunks.append(chunk)
    except ConnectionResetError:
        return True, b"".join(chunks)
    except TimeoutError:
        pass
    return False, b"".join(chunks)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class ResponseReader:
    """Reads HTTP/1.x responses one at a time from a socket (keep-alive and pipelining).

    One parser runs over the whole stream, so several responses arriving in one
    segment are all kept. A response to HEAD ends with its head, which httptools
    cannot know: ``read(head=True)`` (or ``head_request=True``) splits it off by hand.
    Interim (1xx) responses are returned like final ones.
    """

    def __init__(self, sock: socket.socket, *, head_request: bool = False) -> None:
        self.sock = sock
        self.buffer = b""
        self.done: deque[Response] = deque()
        self.head_request = head_request
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.done.append(Response(status, self._headers, b"".join(self._body), b""))

    def _recv(self) -> bytes:
        if self.buffer:
            data, self.buffer = self.buffer, b""
            return data
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response was complete")
        return chunk

    def read(self, timeout: float = 5.0, *, head: bool | None = None) -> Response:
        self.sock.settimeout(timeout)
        if self.head_request if head is None else head:
            return self._read_head_only()
        while not self.done:
            self.parser.feed_data(self._recv())
        return self.done.popleft()

    def _read_head_only(self) -> Response:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        raw_head, _, self.buffer = data.partition(b"\r\n\r\n")
        raw_head += b"\r\n\r\n"
        parser = httptools.HttpResponseParser(self)
        parser.feed_data(raw_head)
        self.done.clear()
        self.parser = httptools.HttpResponseParser(self)
        return Response(parser.get_status_code(), self._headers, b"", raw_head)


def request(port: int, raw: bytes, timeout: float = 5.0) -> Response:
    """Send raw request bytes on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        head = raw.split(b" ", 1)[0] == b"HEAD"
        return ResponseReader(sock, head_request=head).read(timeout)


def get(port: int, path: str = "/", host: str = "example.com", headers: str = "") -> Response:
    return request(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())


def read_head(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Read up to the end of a message head: (head, bytes that followed it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the end of the head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def recv_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("closed early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# -- backends -------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    version: str

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


Responder = Callable[[Received], bytes | Awaitable[bytes]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ok_response(body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@dataclass
class Backend:
    """An HTTP/1.1 backend on its own loop thread that records everything it receives.

    ``responder`` builds the response bytes for each request (it may be async to
    delay); ``raw`` replaces HTTP handling entirely for misbehaving backends.
    """

    responder: Responder | None = None
    raw: RawHandler | None = None
    requests: list[Received] = field(default_factory=list)
    raw_bytes: bytearray = field(default_factory=bytearray)
    connections: int = 0  # accepted so far
    open_connections: int = 0  # open now
    parse_errors: int = 0  # requests this backend could not parse
    port: int = 0

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Backend:
        self.thread.start()
        if not self.ready.wait(5):
            raise TimeoutError("backend did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            if self.raw is not None:
                await self.raw(reader, writer)
                return
            await self._serve_http(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() ends connection tasks this way; ending normally keeps asyncio's
            # own done-callback from logging the cancellation as an error.
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done: list[Received] = []
        state: dict[str, object] = {}

        class Callbacks:
            def on_message_begin(self) -> None:
                state.update(url=b"", headers=[], body=[])

            def on_url(self, url: bytes) -> None:
                state["url"] = state["url"] + url  # type: ignore[operator]

            def on_header(self, name: bytes, value: bytes) -> None:
                state["headers"].append((name.decode("latin-1"), value.decode("latin-1")))  # type: ignore[attr-defined]

            def on_body(self, body: bytes) -> None:
                state["body"].append(body)  # type: ignore[attr-defined]

            def on_message_complete(self) -> None:
                done.append(
                    Received(
                        parser.get_method().decode(),
                        state["url"].decode("latin-1"),  # type: ignore[attr-defined]
                        state["headers"],  # type: ignore[arg-type]
                        b"".join(state["body"]),  # type: ignore[arg-type]
                        parser.get_http_version(),
                    )
                )

        parser = httptools.HttpRequestParser(Callbacks())
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.raw_bytes += data
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass
            except httptools.HttpParserError:
                # Turnout passed on something no HTTP server accepts: say so and stop.
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.parse_errors += 1
                return
            while done:
                received = done.pop(0)
                self.requests.append(received)
                responder = self.responder or (lambda r: ok_response())
                response = responder(received)
                if asyncio.iscoroutine(response):
                    response = await response
                if response:
                    writer.write(response)  # type: ignore[arg-type]
                    await writer.drain()

    def settle(self, turns: int = 4) -> None:
        """Let the backend's loop run a few turns, so that bytes already in its sockets
        are read and recorded before a test takes its "before" counts.

        The loop runs in a thread of the test process: on a loaded machine it can
        lag behind, and bytes of an earlier exchange (a request Turnout aborted
        mid-body, say) would otherwise be counted as the next one's.
        """
        for _ in range(turns):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def dynamic_for(
    *urls: str,
    rule: str = "PathPrefix(`/`)",
    weights: tuple[int, ...] = (),
    balancer: str = "",
    extra: str = "",
) -> str:
    """One router ``app`` to one service ``app`` load-balancing over urls.

    ``balancer`` holds keys of the loadBalancer table (``passHostHeader = false``);
    ``extra`` is appended and should start with a table header.
    """
    servers = ""
    for index, url in enumerate(urls):
        servers += f'[[http.services.app.loadBalancer.servers]]\nurl = "{url}"\n'
        if weights:
            servers += f"weight = {weights[index]}\n"
    return (
        f'[http.routers.app]\nrule = "{rule}"\nservice = "app"\n'
        f"[http.services.app.loadBalancer]\n{balancer}\n{servers}{extra}"
    )


class BackendProcess:
    """A real backend process, ``python -m tests.integration.stream_backend``, on a free
    port (long streamed responses, or silence; see that module), stopped by its pid."""

    def __init__(self, name: str, mode: str = "stream", *options: str, port: int = 0) -> None:
        self.name = name
        self.port = port or free_port()  # a port of a stopped one: the same server restarted
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.integration.stream_backend"),
                *("--port", str(self.port), "--name", name, "--mode", mode, *options),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the way a backend crashes or is OOM-killed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
