from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Backend, Turnout


@pytest.fixture
def backend() -> Iterator[Callable[..., Backend]]:
    """Start recording backends; all are stopped at the end of the test."""
    started: list[Backend] = []

    def make(**kwargs: object) -> Backend:
        server = Backend(**kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def turnout(tmp_path: Path) -> Iterator[Callable[..., Turnout]]:
    """Start real turnout processes; each is stopped with SIGTERM and must exit 0 cleanly.

    ``ready=False`` returns as soon as the process is launched, before it listens.
    """
    started: list[Turnout] = []

    def make(dynamic: str, *, ready: bool = True, **kwargs: object) -> Turnout:
        workdir = tmp_path / f"turnout{len(started)}"
        workdir.mkdir()
        proxy = Turnout(workdir, dynamic, **kwargs)  # type: ignore[arg-type]
        if ready:
            proxy.start()
        else:
            proxy.launch()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        assert proxy.stop() == 0, proxy.stderr()
