"""The aggregator: every provider's latest configuration, merged into the live snapshot.

Theory of operation
-------------------
Providers only produce configuration. Each one hands the aggregator complete
configurations for its own namespace (``submit``), or a ``ConfigError`` when
what it read does not even decode. The aggregator keeps, per provider, the
configuration that is live (``accepted``) and compiles all of them together
into one ``Snapshot`` (``build_merged``) whenever one changes.

- **Throttle.** A burst of changes from one provider is coalesced, as
  Traefik's ``providersThrottleDuration`` does: the first change of a quiet
  provider is applied at once, and for ``throttle`` seconds after each
  application only the newest of the changes that arrive is kept, and applied
  when the window ends.
- **Refusal.** The live snapshot never has a single issue. A candidate build
  with any issue is refused whole: the provider's previous configuration
  stays live, the error is logged, counted, and kept as ``last_error`` (with
  its time) for the API. Because the live set has no issue, any issue of a
  candidate is caused by that candidate.
- **Cross-provider references.** A refused update whose only fault may be a
  name another provider has not delivered yet (``svc@redis`` while Redis is
  still connecting) is kept as ``pending`` and tried again after every
  accepted change of another provider.
- **Off the loop.** Builds run one at a time on a worker thread: a large table
  (10,000 routers: about half a second) must not stall the requests in flight,
  which keep running on the snapshot they started on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from proxy.config.dynamic import DynamicConfig
from proxy.config.lines import attach_lines
from proxy.config.load import ConfigError, ConfigIssue
from proxy.config.static import StaticConfig
from proxy.runtime.snapshot import PoolRegistry, ProviderConfig, Snapshot, build_merged

log = logging.getLogger("turnout")

Update = DynamicConfig | ConfigError


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused update: when, and every reason."""

    time: float  # Unix time
    issues: tuple[ConfigIssue, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "errors": [
                {
                    "file": issue.file,
                    "path": issue.path,
                    "line": issue.line,
                    "message": issue.message,
                }
                for issue in self.issues
            ],
        }


@dataclass(slots=True)
class ProviderState:
    name: str
    source: str
    accepted: DynamicConfig | None = None
    accepted_at: float | None = None
    pending: DynamicConfig | None = None
    last_error: Refusal | None = None
    # Why the provider cannot currently read its source (a connection error), if it cannot.
    unreachable: str | None = None
    updates: int = 0
    refusals: int = 0
    # Throttle: the newest update not yet applied, and when the next may be.
    latest: Update | None = None
    quiet_at: float = 0.0
    timer: asyncio.TimerHandle | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "source": self.source,
            "acceptedAt": self.accepted_at,
            "updates": self.updates,
            "refusals": self.refusals,
            "unreachable": self.unreachable,
            "lastError": None if self.last_error is None else self.last_error.to_dict(),
        }


@dataclass(slots=True)
class ReloadCounters:
    """Traefik's config reload metric families, read by the metrics registry."""

    total: int = 0
    failures: int = 0
    last_success: float = 0.0  # Unix time
    last_failure: float = 0.0


@dataclass(slots=True)
class Aggregator:
    static: StaticConfig
    entrypoints: list[str]
    pools: PoolRegistry | None = None
    on_swap: Callable[[Snapshot], None] | None = None
    throttle: float = 0.1
    clock: Callable[[], float] = time.time
    providers: dict[str, ProviderState] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    counters: ReloadCounters = field(default_factory=ReloadCounters)
    _ready: dict[str, Update] = field(default_factory=dict)
    _wake: asyncio.Event | None = None
    _worker: asyncio.Task[None] | None = None
    _busy: bool = False
    _executor: ThreadPoolExecutor | None = None

    # -- providers ----------------------------------------------------------

    def register(self, name: str, source: str) -> ProviderState:
        state = self.providers.get(name)
        if state is None:
            state = self.providers[name] = ProviderState(name, source)
        return state

    def configs(self, replace: tuple[str, DynamicConfig] | None = None) -> list[ProviderConfig]:
        """The live configuration of every provider, with one replaced when given."""
        configs = []
        for state in self.providers.values():
            dynamic = state.accepted
            if replace is not None and replace[0] == state.name:
                dynamic = replace[1]
            if dynamic is not None:
                configs.append(ProviderConfig(state.name, dynamic, state.source))
        return configs

    # -- start-up: synchronous, before any entry point listens ---------------

    def start(
        self, initial: dict[str, Update], *, required: str | None = None
    ) -> list[ConfigIssue]:
        """Build the first snapshot from each provider's first configuration.

        Everything is tried together first. If that fails, ``required`` (the
        file provider, whose errors stop Turnout from starting) is built
        alone, then the others are added one by one and each that brings an
        issue is refused, so one bad remote source does not block the rest.
        Returns the issues that must stop start-up (``required``'s).
        """
        self._ensure_worker()
        decoded: dict[str, DynamicConfig] = {}
        for name, update in initial.items():
            if isinstance(update, ConfigError):
                if name == required:
                    return list(update.issues)
                self._refuse(self.providers[name], list(update.issues), None)
            else:
                decoded[name] = update
        snapshot, issues = self._build_with(decoded)
        if not issues:
            for name, dynamic in decoded.items():
                self._accept(self.providers[name], dynamic)
            self._swap(snapshot, None)
            return []
        accepted: dict[str, DynamicConfig] = {}
        order = sorted(decoded, key=lambda name: name != required)
        for name in order:
            trial = {**accepted, name: decoded[name]}
            snapshot, issues = self._build_with(trial)
            if issues:
                if name == required:
                    return attach_lines(issues)
                self._refuse(self.providers[name], issues, decoded[name])
                continue
            accepted = trial
            self._accept(self.providers[name], decoded[name])
        snapshot, issues = self._build_with(accepted)
        assert not issues
        self._swap(snapshot, None)
        return []

    def _build_with(self, configs: dict[str, DynamicConfig]) -> tuple[Snapshot, list[ConfigIssue]]:
        provider_configs = [
            ProviderConfig(name, configs[name], self.providers[name].source)
            for name in self.providers
            if name in configs
        ]
        return build_merged(
            provider_configs, self.static, entrypoints=self.entrypoints, pools=self.pools
        )

    # -- updates --------------------------------------------------------------

    def submit(self, name: str, update: Update) -> None:
        """A provider's new complete configuration (or why it does not decode). Loop thread."""
        state = self.providers[name]
        state.unreachable = None
        state.latest = update
        if state.timer is not None:
            return  # inside the throttle window: only the newest is kept
        loop = asyncio.get_running_loop()
        delay = max(0.0, state.quiet_at - loop.time())
        state.timer = loop.call_later(delay, self._release, name)

    def unreachable(self, name: str, message: str | None) -> None:
        """A provider cannot read its source (``None``: it can again); nothing else changes."""
        state = self.providers[name]
        if message is None:
            if state.unreachable is not None:
                log.info("provider %s: reading its source again", name)
        elif state.unreachable is None:
            log.error("provider %s: %s; its last configuration stays live", name, message)
        else:
            log.debug("provider %s: still unreachable: %s", name, message)
        state.unreachable = message

    def _release(self, name: str) -> None:
        state = self.providers[name]
        state.timer = None
        if state.latest is None:
            return
        loop = asyncio.get_running_loop()
        state.quiet_at = loop.time() + self.throttle
        self._ready[name] = state.latest
        state.latest = None
        self._ensure_worker()
        assert self._wake is not None
        self._wake.set()

    def _ensure_worker(self) -> None:
        """The one task that applies updates, started with the aggregator.

        Started once, not at the first update, so the tasks of a running Turnout
        are the same before and after traffic and reloads (leak checks rely on it).
        """
        if self._worker is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (turnout check): updates are never applied here
        self._wake = asyncio.Event()
        self._worker = loop.create_task(self._work(), name="turnout-aggregator")

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready:
                name = next(iter(self._ready))
                update = self._ready.pop(name)
                self._busy = True
                try:
                    await self._apply(name, update)
                except Exception:  # a bug must not stop all future reloads
                    log.exception("provider %s: building the configuration failed", name)
                finally:
                    self._busy = False

    async def _apply(self, name: str, update: Update) -> bool:
        state = self.providers[name]
        if isinstance(update, ConfigError):
            self._refuse(state, list(update.issues), None)
            return False
        if update == state.accepted:
            # Back to what is live (a refused change undone): nothing to build.
            state.pending = None
            state.last_error = None
            return True
        snapshot, issues = await self._build_off_loop(self.configs((name, update)))
        if issues:
            self._refuse(state, issues, update)
            return False
        previous = self.snapshot
        self._accept(state, update)
        self._swap(snapshot, previous)
        await self._retry_pending(name)
        return True

    async def _retry_pending(self, changed: str) -> None:
        for state in list(self.providers.values()):
            if state.name == changed or state.pending is None:
                continue
            candidate = state.pending
            snapshot, issues = await self._build_off_loop(self.configs((state.name, candidate)))
            if not issues:
                log.info("provider %s: its pending configuration now applies", state.name)
                previous = self.snapshot
                self._accept(state, candidate)
                self._swap(snapshot, previous)

    async def _build_off_loop(
        self, configs: list[ProviderConfig]
    ) -> tuple[Snapshot, list[ConfigIssue]]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="turnout-build")
        build = functools.partial(
            build_merged,
            configs,
            self.static,
            entrypoints=self.entrypoints,
            pools=self.pools,
            previous=self.snapshot,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, build)

    def _accept(self, state: ProviderState, dynamic: DynamicConfig) -> None:
        state.accepted = dynamic
        state.accepted_at = self.clock()
        state.pending = None
        state.last_error = None
        state.updates += 1

    def _refuse(
        self, state: ProviderState, issues: list[ConfigIssue], candidate: DynamicConfig | None
    ) -> None:
        now = self.clock()
        issues = attach_lines(issues)
        state.last_error = Refusal(now, tuple(issues))
        state.pending = candidate
        state.refusals += 1
        self.counters.total += 1
        self.counters.failures += 1
        self.counters.last_failure = now
        kept = "previous configuration kept" if state.accepted is not None else "nothing applied"
        log.error(
            "configuration from provider %s refused (%d error%s), %s:",
            state.name,
            len(issues),
            "" if len(issues) == 1 else "s",
            kept,
        )
        for issue in issues:
            log.error("  %s", issue)

    def _swap(self, snapshot: Snapshot, previous: Snapshot | None) -> None:
        self.snapshot = snapshot
        self.counters.total += 1
        self.counters.last_success = self.clock()
        if self.on_swap is not None:
            self.on_swap(snapshot)
        if self.pools is not None:
            self.pools.retain(snapshot.pools())
        if previous is not None:
            log.info("configuration applied: %s", change_summary(previous, snapshot))

    # -- dry runs and status ---------------------------------------------------

    def check(self, name: str, dynamic: DynamicConfig) -> tuple[Snapshot, list[ConfigIssue]]:
        """What applying ``dynamic`` as provider ``name``'s configuration would give.

        Nothing is swapped, dialled or counted: this is what ``POST /api/check``
        answers with (see ``proxy.runtime.report``).
        """
        if name not in self.providers:
            self.register(name, name)
        return build_merged(
            self.configs((name, dynamic)), self.static, entrypoints=self.entrypoints, pools=None
        )

    def status(self) -> list[dict[str, Any]]:
        return [state.to_dict() for state in self.providers.values()]

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until no update is throttled, queued or being built (for tests and shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            any(s.timer is not None for s in self.providers.values()) or self._ready or self._busy
        ):
            if loop.time() > deadline:
                raise TimeoutError("configuration updates did not settle")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        for state in self.providers.values():
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def change_summary(before: Snapshot, after: Snapshot) -> str:
    """The one line a reload logs: counts, and the names of what changed.

    ``12 routers (+2 added: a@file, tcp:db@file; -1 removed: c@redis; ~0 changed),
    1 service changed``: HTTP, TCP and UDP routers and services together, TCP
    and UDP names marked ``tcp:``/``udp:``; past ``SUMMARY_NAMES`` names a kind
    says ``...``.
    """
    old, new = _all_routers(before), _all_routers(after)
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    changed = [name for name, router in new.items() if name in old and old[name] != router]
    old_services, new_services = _all_services(before), _all_services(after)
    services_changed = sum(
        1 for name, service in new_services.items() if old_services.get(name) != service
    ) + sum(1 for name in old_services if name not in new_services)
    noun = "router" if len(new) == 1 else "routers"
    parts = "; ".join(
        _named(sign, names, verb)
        for sign, names, verb in (
            ("+", added, "added"),
            ("-", removed, "removed"),
            ("~", changed, "changed"),
        )
    )
    return (
        f"{len(new)} {noun} ({parts}), "
        f"{services_changed} service{'' if services_changed == 1 else 's'} changed"
    )


def _all_routers(snapshot: Snapshot) -> dict[str, object]:
    return {
        **snapshot.router_configs,
        **{f"tcp:{name}": router for name, router in snapshot.tcp.router_configs.items()},
        **{f"udp:{name}": router for name, router in snapshot.udp.router_configs.items()},
    }


def _all_services(snapshot: Snapshot) -> dict[str, object]:
    return {
        **snapshot.service_configs,
        **{f"tcp:{name}": service for name, service in snapshot.tcp.service_configs.items()},
        **{f"udp:{name}": service for name, service in snapshot.udp.service_configs.items()},
    }


# A reload of a thousand routers must still log one readable line.
SUMMARY_NAMES = 5


def _named(sign: str, names: list[str], verb: str) -> str:
    text = f"{sign}{len(names)} {verb}"
    if not names:
        return text
    shown = ", ".join(sorted(names)[:SUMMARY_NAMES])
    more = ", ..." if len(names) > SUMMARY_NAMES else ""
    return f"{text}: {shown}{more}"
