"""Helpers for the traffic-control suites (rateLimit, inFlightReq, compress, ...).

One real ``turnout run`` per test module where the cases allow it: a module
declares one router per case, told apart by Host, and its tests talk to that
process over real sockets. ``check`` runs ``turnout check`` as a real process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout
from tests.middlewares.support import run_backend, run_check, run_proxies, service
from tests.providers.servers import RedisServer

__all__ = [
    "check",
    "host_router",
    "module_backend_fixture",
    "module_proxy_fixture",
    "read_request",
    "redis_server_fixture",
    "service",
]


def host_router(name: str, middlewares: list[str], rule: str = "") -> str:
    """Router NAME for ``Host(`NAME.test`)`` (or ``rule``) through ``middlewares`` to ``app``."""
    listed = ", ".join(f'"{m}"' for m in middlewares)
    return (
        f"[http.routers.{name}]\n"
        f'rule = "{rule or f"Host(`{name}.test`)"}"\n'
        f'service = "app"\nmiddlewares = [{listed}]\n'
    )


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request read whole by a raw backend: its head, and its body (chunks kept as sent)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    if b"transfer-encoding: chunked" in head.lower():
        body = await reader.readuntil(b"0\r\n\r\n")
    return head, body


@pytest.fixture(scope="module", name="module_backend")
def module_backend_fixture() -> Iterator[Backend]:
    yield from run_backend()


@pytest.fixture(scope="module", name="module_proxy")
def module_proxy_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Turnout]]:
    yield from run_proxies(tmp_path_factory)


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server (skipped without the binary, failing when CI=true)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def check(tmp_path: Path, dynamic: str) -> tuple[int, str]:
    """``turnout check`` in a real process: its exit code and everything it printed."""
    done = run_check(tmp_path, dynamic, "check.toml", "check-static.toml")
    return done.returncode, done.stdout + done.stderr
