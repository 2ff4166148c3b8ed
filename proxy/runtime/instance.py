"""The running proxy: entry points, the live snapshot, the sweeper and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError, ConfigIssue, load_dynamic, load_dynamic_directory
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import StaticConfig
from proxy.http.resolver import Resolver
from proxy.runtime.entrypoint import Clock, EntryPoint
from proxy.runtime.snapshot import PoolRegistry, Snapshot, build_snapshot

log = logging.getLogger("turnout")

# Deadlines are checked this often; no timeout is configured finer than a second
# in practice, and a coarser tick costs less with many idle connections.
TICK = 0.25


def entrypoint_configs(static: StaticConfig) -> dict[str, EntryPointConfig]:
    """Traefik listens on ':80' as entry point 'http' when none is configured."""
    if static.entry_points:
        return dict(static.entry_points)
    return {"http": EntryPointConfig(address=":80")}


def dynamic_source(static: StaticConfig, base: Path | None) -> Path | None:
    """The file provider's file or folder; relative paths resolve against base when given."""
    file = static.providers.file
    if file is None:
        return None
    name = file.filename or file.directory
    if not name:
        return None
    path = Path(name)
    if base is not None and not path.is_absolute():
        path = base / path
    return path


def load_provider_config(static: StaticConfig, base: Path | None) -> tuple[DynamicConfig, str]:
    """Read the file provider's configuration; raises ConfigError."""
    path = dynamic_source(static, base)
    if path is None:
        return DynamicConfig(), ""
    file = static.providers.file
    assert file is not None
    if file.directory and not file.filename:
        return load_dynamic_directory(path), str(path)
    return load_dynamic(path), str(path)


class Instance:
    def __init__(self, static: StaticConfig, static_file: str, base: Path | None = None) -> None:
        self.static = static
        self.static_file = static_file
        self.base = base
        self.entrypoints: dict[str, EntryPoint] = {}
        self.snapshot: Snapshot | None = None
        self._stop = asyncio.Event()
        self._reload_pending = False
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- configuration ------------------------------------------------------

    def _build(self, pools: PoolRegistry) -> tuple[Snapshot | None, list[ConfigIssue]]:
        try:
            dynamic, source = load_provider_config(self.static, self.base)
        except ConfigError as error:
            return None, list(error.issues)
        snapshot, issues = build_snapshot(
            dynamic,
            self.static,
            entrypoints=list(entrypoint_configs(self.static)),
            source=source,
            pools=pools,
        )
        return (None if issues else snapshot), issues

    def reload(self) -> bool:
        """Re-read the file provider; swap the snapshot only if the whole build succeeds."""
        snapshot, issues = self._build(self.pools)
        if snapshot is None:
            for issue in issues:
                log.error("configuration refused, previous routing kept: %s", issue)
            return False
        self._swap(snapshot)
        log.info("configuration reloaded: %d routers", len(snapshot.routers))
        return True

    def _swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for entrypoint in self.entrypoints.values():
            entrypoint.snapshot = snapshot

    # -- life cycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.clock = Clock(loop.time())
        self.resolver = Resolver()
        self.pools = PoolRegistry(loop, self.resolver)
        snapshot, issues = self._build(self.pools)
        if snapshot is None:
            for issue in issues:
                print(issue, file=sys.stderr)
            return 1
        self.snapshot = snapshot
        for name, config in entrypoint_configs(self.static).items():
            if "/udp" in config.address.lower():
                print(
                    f"{self.static_file}: entryPoints.{name}.address: UDP entry points "
                    "are not supported by Turnout yet",
                    file=sys.stderr,
                )
                return 1
            self.entrypoints[name] = EntryPoint(name, config, self.clock, snapshot)
        for name, entrypoint in self.entrypoints.items():
            try:
                await entrypoint.start(loop)
            except OSError as exc:
                print(
                    f"{self.static_file}: entryPoints.{name}.address: cannot listen on "
                    f"{entrypoint.config.address!r}: {exc.strerror or exc}",
                    file=sys.stderr,
                )
                self._close_listeners()
                return 1
            assert entrypoint.server is not None
            for sock in entrypoint.server.sockets:
                host, port = sock.getsockname()[:2]
                log.info("entryPoint %s listening on %s", name, _format_address(host, port))
        log.info("configuration loaded: %d routers", len(snapshot.routers))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._tick_handle = loop.call_later(TICK, self._tick)
        await self._stop.wait()
        await self._shutdown()
        return 0

    def _tick(self) -> None:
        now = self.loop.time()
        self.clock.now = now
        for entrypoint in self.entrypoints.values():
            entrypoint.sweep(now)
        for pool in self.pools.all():
            pool.sweep(now)
        self._tick_handle = self.loop.call_later(TICK, self._tick)

    async def _shutdown(self) -> None:
        log.info("stopping: finishing requests in flight")
        accept_grace = max((e.accept_grace_timeout for e in self.entrypoints.values()), default=0)
        if accept_grace > 0:
            # Traefik keeps accepting for requestAcceptGraceTimeout so that a load
            # balancer in front notices the instance leaving before it stops.
            await asyncio.sleep(accept_grace)
        self._close_listeners()
        for entrypoint in self.entrypoints.values():
            for conn in list(entrypoint.connections):
                conn.shutdown()
        grace = max((e.grace_timeout for e in self.entrypoints.values()), default=0)
        deadline = self.loop.time() + grace
        while self.loop.time() < deadline and any(e.connections for e in self.entrypoints.values()):
            await asyncio.sleep(0.05)
        for entrypoint in self.entrypoints.values():
            for conn in list(entrypoint.connections):
                conn.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self.pools.close()
        self.resolver.close()
        for entrypoint in self.entrypoints.values():
            if entrypoint.server is not None:
                await entrypoint.server.wait_closed()
        log.info("stopped")

    def _close_listeners(self) -> None:
        for entrypoint in self.entrypoints.values():
            entrypoint.stop_accepting()


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
