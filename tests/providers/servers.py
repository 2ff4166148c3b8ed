"""Real Redis and etcd servers for the provider tests, from their Debian packages.

Each one runs in a temporary folder on free loopback ports and is stopped by
process id. ``restart`` keeps the data folder (Redis with an append-only file)
so a restarted server comes back with what it held.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.runtime.support import free_port, require_binary, wait_for_port


class _Process:
    process: subprocess.Popen[bytes] | None = None
    log_path: Path

    def _spawn(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"), start_new_session=True
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class RedisServer(_Process):
    def __init__(self, workdir: Path, *, password: str = "") -> None:
        self.binary = require_binary("redis-server")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.log_path = workdir / "redis.log"

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self._spawn(argv)
        wait_for_port(self.port)
        deadline = time.monotonic() + 10
        while True:  # a restart replays the append-only file first (LOADING)
            try:
                if self.command("PING") == "PONG":
                    return self
            except (RuntimeError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis did not become ready:\n{self.log()}")
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: str) -> object:
        """One command over RESP, without a client library (the test's own independent view)."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as sock:
            parts = list(args)
            if self.password:
                parts_auth = ["AUTH", self.password]
                sock.sendall(_resp(parts_auth))
                _read_reply(sock.makefile("rb"))
            sock.sendall(_resp(parts))
            return _read_reply(sock.makefile("rb"))

    def set(self, key: str, value: str) -> None:
        self.command("SET", key, value)

    def delete(self, *keys: str) -> None:
        self.command("DEL", *keys)


def _resp(parts: list[str]) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


def _read_reply(stream) -> object:  # type: ignore[no-untyped-def]
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


class EtcdServer(_Process):
    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("etcd")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.peer_port = free_port()
        self.log_path = workdir / "etcd.log"
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._spawn(
            [
                self.binary,
                "--name",
                "turnout-test",
                "--data-dir",
                str(self.workdir / "data"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"turnout-test={peer}",
                "--log-level",
                "error",
            ]
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd did not start:\n{self.log()}")
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def put(self, key: str, value: str) -> None:
        self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def delete(self, key: str) -> None:
        self._post("/v3/kv/deleterange", {"key": _b64(key)})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
