from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError
from tests.providers.servers import EtcdServer, RedisServer


class Recorder:
    """A Sink that keeps what a provider hands over."""

    def __init__(self) -> None:
        self.updates: list[DynamicConfig | ConfigError] = []
        self.unreachable_messages: list[str] = []
        self._changed = asyncio.Event()

    def submit(self, name: str, update: DynamicConfig | ConfigError) -> None:
        self.updates.append(update)
        self._changed.set()

    def unreachable(self, name: str, message: str | None) -> None:
        if message is not None:
            self.unreachable_messages.append(message)
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out; updates={self.updates!r} unreachable={self.unreachable_messages!r}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def routers(self, index: int = -1) -> dict:
        update = self.updates[index]
        assert isinstance(update, DynamicConfig), update
        return update.http.routers


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path / "etcd").start()
    yield server
    server.stop()
