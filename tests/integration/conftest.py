from __future__ import annotations

import time
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
            baselines[proxy] = proxy.stats()
        else:
            proxy.launch()
        started.append(proxy)
        return proxy

    baselines: dict[Turnout, dict[str, object]] = {}
    yield make
    # Every process is stopped, whatever fails first: a failed check must not
    # leave a turnout running after the test.
    failures: list[AssertionError] = []
    for proxy in started:
        baseline = baselines.get(proxy)
        try:
            if baseline is not None and proxy.process is not None and proxy.process.poll() is None:
                assert_back_to_baseline(proxy, baseline)
        except AssertionError as leak:
            failures.append(leak)
        try:
            assert proxy.stop() == 0, proxy.stderr()
        except AssertionError as failed:
            failures.append(failed)
    if failures:
        raise failures[0]


def assert_back_to_baseline(proxy: Turnout, baseline: dict[str, object]) -> None:
    """Issue 3: after the traffic of a test, no client connection, task or descriptor is left.

    Idle pooled backend connections are allowed (they are the pool); everything
    else must return to what the process held right after it started.
    """
    deadline = time.monotonic() + 5
    while True:
        now = proxy.stats()
        connections = sum(now["connections"].values())  # type: ignore[attr-defined]
        fds = now["fds"] - now["upstream_idle"]  # type: ignore[operator]
        settled = (
            connections == 0
            and now["upstream_open"] == now["upstream_idle"]
            and fds <= baseline["fds"]  # type: ignore[operator]
            and now["tasks"] <= baseline["tasks"]  # type: ignore[operator]
        )
        if settled:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"turnout did not return to its baseline {baseline}: {now}")
        time.sleep(0.05)
