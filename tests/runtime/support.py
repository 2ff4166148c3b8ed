"""Real processes for the dynamic-configuration tests: turnout, named backends, steady load.

Everything listens on 127.0.0.1 on free ports and is stopped by process id.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def require_binary(name: str) -> str:
    """The path of a Debian-packaged binary; skip without it, but fail in CI (CI=true)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    message = f"{name} is not installed (make deps-debian installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


# -- backends --------------------------------------------------------------------


class NamedBackend:
    """An HTTP server answering every request with its own name, on its own thread."""

    def __init__(self, name: str) -> None:
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.name = name
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- turnout -----------------------------------------------------------------------


class TurnoutProcess:
    """A real ``turnout run`` with one entry point ``web`` on a free port."""

    def __init__(self, workdir: Path, providers: str, *, extra: str = "") -> None:
        self.port = free_port()
        self.static_path = workdir / "static.toml"
        self.static_path.write_text(
            f'[entryPoints.web]\naddress = "127.0.0.1:{self.port}"\n\n{providers}\n{extra}\n'
            '[log]\nlevel = "INFO"\n'
        )
        self.stderr_path = workdir / "turnout.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TurnoutProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "run", "-c", str(self.static_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("wb"),
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"turnout did not start:\n{self.stderr()}") from None
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.stderr().count(text)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode

    def get(self, host: str = "app.example", path: str = "/") -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def body(self, host: str = "app.example", path: str = "/") -> str:
        status, body = self.get(host, path)
        return body if status == 200 else f"{status}"


# -- steady load ---------------------------------------------------------------------


@dataclass
class Load:
    """Keep-alive clients sending requests until stopped; every answer is recorded."""

    port: int
    host: str = "app.example"
    clients: int = 2
    failures: list[str] = field(default_factory=list)
    bodies: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self._stop.is_set():
            try:
                connection.request("GET", "/", headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read().decode()
                with self._lock:
                    self.sent += 1
                    if response.status != 200:
                        self.failures.append(f"{response.status} {body[:80]}")
                    else:
                        self.bodies[body] = self.bodies.get(body, 0) + 1
            except (OSError, http.client.HTTPException) as error:
                with self._lock:
                    self.sent += 1
                    self.failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        connection.close()
