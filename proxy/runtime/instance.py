"""The running proxy: entry points, providers and the live snapshot, the sweeper, shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError
from proxy.config.static import EntryPoint as EntryPointConfig
from proxy.config.static import StaticConfig
from proxy.http.exchange import Exchange
from proxy.http.resolver import Resolver
from proxy.http.server import HttpConnection
from proxy.middlewares.retired import RetiredHandlers
from proxy.observability import logging as turnout_logging
from proxy.observability import prometheus
from proxy.observability.accesslog import AccessLog
from proxy.observability.metrics import REGISTRY
from proxy.observability.statsd import StatsdPusher
from proxy.providers import Provider, ProviderUnavailable, configured
from proxy.providers.file import FileProvider
from proxy.runtime import debug
from proxy.runtime.aggregator import Aggregator
from proxy.runtime.entrypoint import Clock, EntryPoint
from proxy.runtime.internal import with_internal_entrypoint
from proxy.runtime.snapshot import PoolRegistry, Snapshot
from proxy.services.healthcheck import HealthChecks
from proxy.udp.build import udp_entrypoints
from proxy.udp.server import UdpEntryPoint

log = logging.getLogger("turnout")

# Deadlines are checked this often; no timeout is configured finer than a second
# in practice, and a coarser tick costs less with many idle connections.
TICK = 0.25


def entrypoint_configs(static: StaticConfig) -> dict[str, EntryPointConfig]:
    """Traefik listens on ':80' as entry point 'http' when none is configured, and
    on ':8080' as entry point 'traefik' when the API, ping or Prometheus need it."""
    if static.entry_points:
        configured = dict(static.entry_points)
    else:
        configured = {"http": EntryPointConfig(address=":80")}
    return with_internal_entrypoint(static, configured)


# Traefik waits 2 s; users whose backends come and go every minute want routing
# to follow in well under a second, and a build of 1,000 routers takes ~50 ms.
DEFAULT_THROTTLE = 0.1


def throttle_of(static: StaticConfig) -> float:
    """``providers.providersThrottleDuration``: Traefik's default is 2 s, Turnout's 100 ms."""
    value = static.providers.providers_throttle_duration
    return DEFAULT_THROTTLE if value is None else max(0.0, float(value))


# A remote provider that does not answer this fast at start-up is left to its
# watcher: Turnout starts with the other providers' routes meanwhile.
START_FETCH_TIMEOUT = 5.0
# Closing a provider (its connections, its watcher thread) must not hold up shutdown.
PROVIDER_STOP_TIMEOUT = 2.0


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path.

    Profiled under load, collections took about 8 % of Turnout's CPU, most of
    it re-walking the long-lived objects of the configuration. Freezing what
    exists once listening moves those out of every future collection, and a
    larger first-generation threshold makes collections rarer; request objects
    are freed by reference counting, not by the collector.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def stop_requested_early() -> bool:
    """Whether a worker was told to stop before its loop could listen for signals."""
    from proxy import workers

    return bool(workers.EARLY_STOP)


class Instance:
    def __init__(
        self,
        static: StaticConfig,
        static_file: str,
        base: Path | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.static = static
        self.reuse_port = reuse_port  # a worker of several: share the ports
        self.static_file = static_file
        self.base = base
        self.entrypoints: dict[str, EntryPoint | UdpEntryPoint] = {}
        self.snapshot: Snapshot | None = None
        self.retired = RetiredHandlers()  # middleware handlers to close
        self.providers: list[Provider] = configured(static, base)
        self.aggregator: Aggregator | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        # Set when a graceful stop begins: ping@internal answers terminatingStatusCode.
        self.terminating = False
        self.started_at = time.time()
        self._tick_handle: asyncio.TimerHandle | None = None
        self.health: HealthChecks | None = None
        self.statsd: StatsdPusher | None = None
        self.access_log: AccessLog | None = None

    # -- configuration ------------------------------------------------------

    async def _first_configurations(self) -> dict[str, DynamicConfig | ConfigError]:
        async def first(provider: Provider) -> DynamicConfig | ConfigError | None:
            try:
                return await asyncio.wait_for(provider.fetch(), START_FETCH_TIMEOUT)
            except ConfigError as error:
                return error
            except (ProviderUnavailable, TimeoutError, OSError) as error:
                assert self.aggregator is not None
                self.aggregator.unreachable(
                    provider.name, f"cannot read {provider.source}: {error or 'timed out'}"
                )
                return None

        results = await asyncio.gather(*(first(provider) for provider in self.providers))
        return {
            provider.name: result
            for provider, result in zip(self.providers, results, strict=True)
            if result is not None
        }

    def reload(self) -> None:
        """SIGHUP: re-read the file provider (its update goes through the aggregator)."""
        assert self.aggregator is not None
        for provider in self.providers:
            if isinstance(provider, FileProvider):
                log.info("SIGHUP: re-reading %s", provider.source)
                provider.reload(self.aggregator, force=True)

    def _swap(self, snapshot: Snapshot) -> None:
        if self.snapshot is not None:
            self.retired.retire(self.snapshot, snapshot)
        self.snapshot = snapshot
        for entrypoint in self.entrypoints.values():
            entrypoint.snapshot = snapshot
        if self.health is not None:
            self.health.follow(snapshot.balancers())
        REGISTRY.retain(snapshot)

    # -- life cycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.clock = Clock(loop.time)
        self.resolver = Resolver()
        self.pools = PoolRegistry(loop, self.resolver)
        self.health = HealthChecks(self.resolver)
        # Handlers first: a SIGTERM during start-up (or as soon as the port opens)
        # must end in a graceful stop, not kill the process.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._usr1)
        if stop_requested_early():
            self._stop.set()
        self.aggregator = Aggregator(
            self.static,
            list(entrypoint_configs(self.static)),
            pools=self.pools,
            on_swap=self._swap,
            throttle=throttle_of(self.static),
        )
        metrics = self.static.metrics
        if metrics is not None and metrics.prometheus is not None:
            # Before any entry point binds its recorder to the bucket bounds.
            REGISTRY.set_buckets(metrics.prometheus.buckets)
        REGISTRY.entrypoint_objects = self.entrypoints
        if metrics is not None and metrics.prometheus is not None:
            prometheus.EXPOSITION = prometheus.Exposition(metrics.prometheus)
        if self.static.access_log is not None:
            access_log = AccessLog(self.static.access_log)
            try:
                access_log.open()
            except OSError as exc:
                print(
                    f"{self.static_file}: accessLog.filePath: cannot open "
                    f"{self.static.access_log.file_path!r}: {exc.strerror or exc}",
                    file=sys.stderr,
                )
                return 1
            self.access_log = access_log
            access_log.start(loop)
        REGISTRY.reloads = self.aggregator.counters
        REGISTRY.snapshot = lambda: self.snapshot
        for provider in self.providers:
            self.aggregator.register(provider.name, provider.source)
        initial = await self._first_configurations()
        issues = self.aggregator.start(initial, required="file")
        if issues:
            for issue in issues:
                print(issue, file=sys.stderr)
            return 1
        snapshot = self.aggregator.snapshot
        assert snapshot is not None
        self.snapshot = snapshot
        for provider in self.providers:
            self._watchers.append(
                loop.create_task(self._watch(provider), name=f"provider-{provider.name}")
            )
        # One turn of the loop: each watcher's first step opens what it keeps
        # open (inotify, connections) before the entry points listen.
        await asyncio.sleep(0)
        udp = udp_entrypoints(self.static)
        for name, config in entrypoint_configs(self.static).items():
            if name in udp:
                udp_entrypoint = UdpEntryPoint(name, config, self.clock, snapshot)
                udp_entrypoint.resolver = self.resolver
                self.entrypoints[name] = udp_entrypoint
                continue
            http = EntryPoint(name, config, self.clock, snapshot, self.access_log)
            http.runtime = self  # what internal services read
            http.resolver = self.resolver
            self.entrypoints[name] = http
        for name, entrypoint in self.entrypoints.items():
            try:
                await entrypoint.start(loop, reuse_port=self.reuse_port)
            except OSError as exc:
                print(
                    f"{self.static_file}: entryPoints.{name}.address: cannot listen on "
                    f"{entrypoint.config.address!r}: {exc.strerror or exc}",
                    file=sys.stderr,
                )
                self._close_listeners()
                await self._stop_providers()
                await self.health.close()
                return 1
            assert entrypoint.server is not None
            for sock in entrypoint.server.sockets:
                host, port = sock.getsockname()[:2]
                udp_suffix = "/udp" if name in udp else ""
                log.info(
                    "entryPoint %s listening on %s%s", name, _format_address(host, port), udp_suffix
                )
        count = (
            len(snapshot.router_configs)
            + len(snapshot.tcp.router_configs)
            + len(snapshot.udp.router_configs)
        )
        log.info("configuration loaded: %d router%s", count, "" if count == 1 else "s")
        if metrics is not None and metrics.stats_d is not None:
            self.statsd = StatsdPusher(metrics.stats_d, REGISTRY)
            self.statsd.start(loop)
        if snapshot.tcp.router_configs:
            from proxy.tcp.splice import SPLICE_AVAILABLE

            count = len(snapshot.tcp.router_configs)
            log.debug(
                "%d TCP router%s; relay: %s",
                count,
                "" if count == 1 else "s",
                "splice (kernel zero-copy)"
                if SPLICE_AVAILABLE
                else "protocol (no os.splice, or TURNOUT_TCP_RELAY=protocol)",
            )
        self._tick_handle = loop.call_later(TICK, self._tick)
        tune_gc()
        await self._stop.wait()
        await self._shutdown()
        return 0

    def _usr1(self) -> None:
        """SIGUSR1: reopen the access log and log.filePath (rotation); print the counters."""
        if self.access_log is not None:
            self.access_log.reopen()
        turnout_logging.reopen()
        debug.dump(self.entrypoints, self.pools)

    def _tick(self) -> None:
        now = self.loop.time()
        self.clock.now = now
        for entrypoint in self.entrypoints.values():
            entrypoint.sweep(now)
        for pool in self.pools.all():
            pool.sweep(now)
        self.pools.sweep_retired()
        if self.retired.waiting:
            self.retired.sweep(self._in_flight())
        self._tick_handle = self.loop.call_later(TICK, self._tick)

    def _in_flight(self) -> Iterator[Exchange]:
        for entrypoint in self.entrypoints.values():
            for conn in entrypoint.connections:
                if not isinstance(conn, HttpConnection):
                    continue  # a PROXY header being read, a UDP session: no exchange
                for ex in (conn.receiving, conn.active, *conn.queue):
                    if isinstance(ex, Exchange):
                        yield ex

    async def _watch(self, provider: Provider) -> None:
        assert self.aggregator is not None
        try:
            await provider.watch(self.aggregator)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a provider bug must not take the proxy down
            log.exception("provider %s stopped following its source: %s", provider.name, error)

    async def _stop_providers(self) -> None:
        """Stop following sources; bounded, so a stuck source never holds up shutdown."""
        for provider in self.providers:
            try:
                async with asyncio.timeout(PROVIDER_STOP_TIMEOUT):
                    await provider.close()
            except TimeoutError:
                log.warning("provider %s: did not close in time", provider.name)
            except Exception as error:
                log.debug("provider %s: closing failed: %s", provider.name, error)
        for task in self._watchers:
            task.cancel()
        if self._watchers:
            _, stuck = await asyncio.wait(self._watchers, timeout=PROVIDER_STOP_TIMEOUT)
            for task in stuck:
                log.warning("%s: did not stop in time", task.get_name())
        self._watchers.clear()
        if self.aggregator is not None:
            await self.aggregator.close()
        log.debug("providers stopped")

    async def _shutdown(self) -> None:
        log.info("stopping: finishing requests in flight")
        self.terminating = True
        await self._stop_providers()
        if self.health is not None:
            await self.health.close()
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
        await self.retired.close_all(self.snapshot, PROVIDER_STOP_TIMEOUT)
        if self.statsd is not None:
            self.statsd.close()  # a last push: what the final requests added
        if self.access_log is not None:
            self.access_log.close()  # the last lines are written, none lost
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
