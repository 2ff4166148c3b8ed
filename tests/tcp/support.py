"""Helpers for TCP tests: backends that echo or answer with their name, configurations, clients."""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from tests.integration.harness import Backend


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo every byte; on the client's FIN, send our FIN (a half-close, not a close)."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await writer.drain()


def named(name: bytes):  # type: ignore[no-untyped-def]
    """A backend that says its name as soon as the connection opens (server speaks first)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name)
        await writer.drain()
        while await reader.read(65536):
            pass

    return serve


def echo_backend(make: object) -> Backend:
    return make(raw=echo)  # type: ignore[operator, no-any-return]


def tcp_service(name: str, *ports: int, extra: str = "") -> str:
    servers = "".join(
        f'[[tcp.services.{name}.loadBalancer.servers]]\naddress = "127.0.0.1:{port}"\n'
        for port in ports
    )
    return f"[tcp.services.{name}.loadBalancer]\n{extra}\n{servers}"


def tcp_router(name: str, rule: str, service: str, extra: str = "") -> str:
    return f'[tcp.routers.{name}]\nrule = "{rule}"\nservice = "{service}"\n{extra}\n'


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send ``payload``, half-close, and read until the proxy's FIN."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return read_to_eof(sock, timeout)


def refused(port: int, payload: bytes = b"hello", timeout: float = 10.0) -> bool:
    """Whether the proxy closes the connection (FIN or reset) without a byte of answer."""
    try:
        return exchange(port, payload, timeout) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError as error:
        # Reset before our own half-close: shutdown() finds the socket gone.
        if error.errno == errno.ENOTCONN:
            return True
        raise


def read_to_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    got = bytearray()
    while data := sock.recv(1 << 20):
        got += data
    return bytes(got)


def read_exactly(sock: socket.socket, size: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        data = sock.recv(size - len(got))
        if not data:
            break
        got += data
    return bytes(got)
