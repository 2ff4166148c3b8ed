"""Helpers for the middleware suites: one real ``turnout run`` per test module.

Starting a process costs a few hundred milliseconds, so a module declares its
routers once (one router per case, told apart by Host) and every test of the
module talks to that process over real sockets. Import the fixtures
``app_backend`` and ``proxy_factory`` into a test module to use them.
``check`` runs ``turnout check`` as a real process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Backend, Received, Turnout

__all__ = [
    "app_backend_fixture",
    "check",
    "last",
    "proxy_factory_fixture",
    "router",
    "service",
]


def router(name: str, middlewares: list[str], *, host: str | None = None) -> str:
    """A router NAME for ``Host(`NAME.test`)`` (or ``host``) to the service ``app``."""
    listed = ", ".join(f'"{m}"' for m in middlewares)
    return (
        f"[http.routers.{name}]\n"
        f'rule = "Host(`{host or name + ".test"}`)"\n'
        f'service = "app"\nmiddlewares = [{listed}]\n'
    )


def service(url: str, name: str = "app") -> str:
    return (
        f"[http.services.{name}.loadBalancer]\n"
        f'[[http.services.{name}.loadBalancer.servers]]\nurl = "{url}"\n'
    )


def run_backend() -> Iterator[Backend]:
    """A recording backend (answers 200 "ok" unless given a responder), stopped after."""
    server = Backend().start()
    yield server
    server.stop()


def run_proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Turnout]]:
    """Start turnout processes that live for the module; each must exit 0 on SIGTERM."""
    started: list[Turnout] = []

    def make(dynamic: str, **kwargs: object) -> Turnout:
        proxy = Turnout(tmp_path_factory.mktemp("turnout"), dynamic, **kwargs)  # type: ignore[arg-type]
        proxy.start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        assert proxy.stop() == 0, proxy.stderr()


@pytest.fixture(scope="module", name="app_backend")
def app_backend_fixture() -> Iterator[Backend]:
    """One recording backend per module."""
    yield from run_backend()


@pytest.fixture(scope="module", name="proxy_factory")
def proxy_factory_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Turnout]]:
    yield from run_proxies(tmp_path_factory)


def run_check(
    tmp_path: Path,
    dynamic: str,
    name: str = "dynamic.toml",
    static_name: str = "static.toml",
    static_extra: str = "",
) -> subprocess.CompletedProcess[str]:
    """``turnout check`` as a real process on one dynamic file called ``name``.

    ``static_extra`` is appended to the static file (start it with a table header).
    """
    dynamic_path = tmp_path / name
    dynamic_path.write_text(dynamic)
    static = tmp_path / static_name
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        f'[providers.file]\nfilename = "{dynamic_path}"\n' + static_extra
    )
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-c", str(static)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def check(tmp_path: Path, dynamic: str) -> tuple[int, str]:
    """``turnout check`` on one file ``dynamic.toml``: exit code and output."""
    done = run_check(tmp_path, dynamic)
    # "FILE:LINE: key: message" where the line is known: the line is dropped here,
    # so a test reads "dynamic.toml: http.middlewares.NAME.TYPE.key: message".
    return done.returncode, re.sub(
        r"dynamic\.toml:\d+: ", "dynamic.toml: ", done.stderr + done.stdout
    )


def last(backend: Backend) -> Received:
    assert backend.requests, "the backend received nothing"
    return backend.requests[-1]
