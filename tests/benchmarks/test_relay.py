"""The ceiling target (benchmarks/relay.py) relays what the benchmark scenarios send.

The relay is started as the runner starts it (the `relay` target), in front of
the bundled backend, and driven over real sockets: keep-alive GETs of both sizes
on one connection, an upload, and a request that asks to close.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.backends import BundledBackend, Ports
from benchmarks.procs import LOOPBACK, http_get
from benchmarks.targets import Relay, Setup


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    workdir: Path = tmp_path_factory.mktemp("relay")
    backend = BundledBackend()
    target = Relay()
    try:
        backend.start(workdir)
        target.start(workdir, Setup(ports=Ports(http=backend.port)))
        yield target
    finally:
        target.stop()
        backend.stop()
    assert target.server is None


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    [length] = [
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed mid-body"
        body += chunk
    return head, body


def test_keep_alive_requests_share_one_connection(relay: Relay) -> None:
    with socket.create_connection((LOOPBACK, relay.port), timeout=5) as s:
        for path, size in (("/", 12), ("/1m", 1 << 20), ("/", 12)):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head, body = _read_response(s)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert len(body) == size


def test_upload_reaches_the_backend(relay: Relay) -> None:
    reply = http_get(relay.port, "/upload", method="POST", body=b"x" * 65536)
    assert (reply.status, reply.body) == (200, b"ok\n")


def test_connection_close_is_answered_and_closed(relay: Relay) -> None:
    with socket.create_connection((LOOPBACK, relay.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        _, body = _read_response(s)
        assert body == b"hello world\n"
        assert s.recv(1) == b""  # closed by the relay after the response
    # And the relay serves the next client.
    assert http_get(relay.port, "/").status == 200
