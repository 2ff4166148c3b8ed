"""retry: send a request to its service again when the backend failed (Traefik's retry).

``attempts`` is the total number of tries, as in Traefik (``attempts = 4``: the
first try and up to three more). A try is repeated only when the backend could
not be reached or failed before any byte of its response was sent to the
client; as soon as a backend answers, whatever its status, there is no retry.

Between tries Traefik waits as its exponential backoff does (cenkalti/backoff
with ``initialInterval``, a multiplier of ``2 ** (1 / (attempts - 1))`` so the
interval at most doubles over the tries, and a randomization factor of 0.5:
each wait is drawn in ``[0.5, 1.5] x`` the current interval). Without
``initialInterval`` (Traefik v3 sets no default), or with ``attempts`` < 2,
tries follow each other at once.

Requests with a body: as Traefik, any request (a POST too) is tried again when
the backend could not be reached (nothing of it was written). Its body is
kept as it streams, up to ``MAX_REPLAY`` bytes (Traefik's retry keeps up to
2 MiB, ``maxRequestBodyBytes``): a larger body is sent once, never retried.

Differs from Traefik: Traefik stops retrying once the request was written to
the backend; Turnout also retries a request whose backend dropped the
connection without answering, when its method is idempotent (RFC 9110: GET,
HEAD, OPTIONS, TRACE, PUT, DELETE) and its body, if any, was kept. A POST that
reached a backend is never sent twice.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from proxy.config.dynamic import Retry
from proxy.http.exchange import IDEMPOTENT
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler
from proxy.middlewares.chain import redispatch
from proxy.observability.metrics import REGISTRY

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

RANDOMIZATION = 0.5  # cenkalti/backoff's DefaultRandomizationFactor
MAX_REPLAY = 2 * 1024 * 1024  # Traefik's RetryDefaultMaxRequestBodyBytes


class _State:
    __slots__ = ("interval", "timer", "tries")

    def __init__(self, interval: float) -> None:
        self.tries = 1  # the first try has been made when the first failure arrives
        self.interval = interval
        self.timer: asyncio.TimerHandle | None = None


class RetryHandler(Handler):
    __slots__ = ("attempts", "initial", "multiplier", "states")

    def __init__(self, name: str, attempts: int, initial: float) -> None:
        super().__init__(name)
        self.attempts = attempts
        self.initial = initial if attempts >= 2 else 0.0
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts >= 2 else 1.0
        self.states: dict[Exchange, _State] = {}

    def next_delay(self, state: _State) -> float:
        """One wait of the exponential backoff, then the interval grows."""
        interval = state.interval
        if interval <= 0:
            return 0.0
        delta = RANDOMIZATION * interval
        low = interval - delta
        delay = low + random.random() * (2 * delta)
        state.interval = interval * self.multiplier
        return delay

    def on_request(self, ex: Exchange) -> None:
        if self.attempts >= 2 and (ex.chunked or ex.content_length):
            ex.keep_body(MAX_REPLAY)

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        if ex.retried or ex.response_state != 0:
            return False  # the engine re-sent it already, or the client got bytes
        if ex.reached_backend and ex.method not in IDEMPOTENT:
            return False
        state = self.states.get(ex)
        if state is None:
            state = self.states[ex] = _State(self.initial)
        if state.tries >= self.attempts:
            return False  # exhausted: the engine answers the failure
        if not ex.rewind_body():
            return False  # the body was too large to keep
        state.tries += 1
        ex.retry_attempts += 1  # the access log's RetryAttempts
        route = ex.route
        if route is not None and route.stats is not None:
            REGISTRY.retried(route.stats.service)  # traefik_service_retries_total
        delay = self.next_delay(state)
        loop = asyncio.get_running_loop()
        if delay > 0:
            state.timer = loop.call_later(delay, self._again, ex)
        else:
            loop.call_soon(self._again, ex)
        return True

    def _again(self, ex: Exchange) -> None:
        state = self.states.get(ex)
        if state is None:
            return  # the exchange ended meanwhile (the client left)
        state.timer = None
        redispatch(ex)

    def on_done(self, ex: Exchange, status: int) -> None:
        state = self.states.pop(ex, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()


@register("retry")
def build(name: str, config: Retry, context: BuildContext) -> Handler:
    if config.attempts <= 0:
        raise BuildError(f"must be a positive number of tries, got {config.attempts}", "attempts")
    if config.initial_interval < 0:
        raise BuildError("must not be negative", "initialInterval")
    return RetryHandler(name, config.attempts, float(config.initial_interval))
