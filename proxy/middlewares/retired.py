"""Handlers a new snapshot no longer uses, closed once no exchange still holds them.

A snapshot swap keeps every unchanged handler (same options, same state); a
removed or changed middleware leaves its old handler behind. Requests that
started on the old snapshot may still run through it (a rate limit waiting
for Redis, a slow download behind a circuit breaker), so it is closed only
when no exchange in flight has it in its chain: the instance offers the
exchanges in flight at each tick while some handler waits. At shutdown every
handler is closed, retired or live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from proxy.middlewares.base import Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.runtime.snapshot import Snapshot

log = logging.getLogger("turnout")


class RetiredHandlers:
    """Handlers waiting for their last exchange, and the close tasks still running."""

    __slots__ = ("tasks", "waiting")

    def __init__(self) -> None:
        self.waiting: list[Handler] = []
        self.tasks: set[asyncio.Future[None]] = set()

    def retire(self, before: Snapshot, after: Snapshot) -> None:
        """After a swap: the handlers of ``before`` that ``after`` does not keep."""
        kept = {id(handler) for _, handler in after.handlers.values()}
        waiting = {id(handler) for handler in self.waiting}
        for _, handler in before.handlers.values():
            if handler.has_close and id(handler) not in kept and id(handler) not in waiting:
                self.waiting.append(handler)
                waiting.add(id(handler))

    def sweep(self, in_flight: Iterable[Exchange]) -> None:
        """Close every waiting handler that no exchange in ``in_flight`` runs through."""
        if not self.waiting:
            return
        used: set[int] = set()
        for ex in in_flight:
            route = ex.route
            if route is not None and route.chain is not None:
                used.update(id(handler) for handler in route.chain.handlers)
        still: list[Handler] = []
        for handler in self.waiting:
            if id(handler) in used:
                still.append(handler)
            else:
                self.close(handler)
        self.waiting = still

    def close(self, handler: Handler) -> None:
        try:
            result = handler.close()
        except Exception:  # one faulty close must not keep the others open
            log.exception("middleware %s: closing failed", handler.name)
            return
        if result is not None:
            task = asyncio.ensure_future(_logged(handler.name, result))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close_all(self, live: Snapshot | None, timeout: float) -> None:
        """Shutdown: close the live snapshot's handlers and every retired one; bounded wait."""
        handlers = [*self.waiting]
        if live is not None:
            handlers += [handler for _, handler in live.handlers.values() if handler.has_close]
        self.waiting = []
        seen: set[int] = set()
        for handler in handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                self.close(handler)
        if self.tasks:
            _, stuck = await asyncio.wait(list(self.tasks), timeout=timeout)
            for task in stuck:
                task.cancel()
                log.warning("a middleware did not close in time")


async def _logged(name: str, closing: Awaitable[None]) -> None:
    try:
        await closing
    except Exception as error:
        log.warning("middleware %s: closing failed: %s", name, error)
