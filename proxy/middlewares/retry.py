"""retry: send a request to its service again when the backend failed (Traefik's retry).

``attempts`` is the total number of tries, as in Traefik (``attempts = 4``: the
first try and up to three more). A try is repeated only when the backend could
not be reached or failed before any byte of its response was sent to the
client; without ``status``, as soon as a backend answers, whatever its status,
there is no retry.

Traefik v3.7's options: ``status`` (``"503"``, ``"500-599"``, comma lists as in
errors) makes an answer with one of those statuses a failure too: it is read
and dropped, and the request is tried again. That holds for the backend's
answers, for the 502/503/504 Turnout itself answers when no backend could, and
for what a middleware inside this one made of the service's answer (errors),
as Traefik's retry sees every status written beneath it. Differs: a
middleware inside that stops the request before the service (an auth, an
allow list) is not tried again: Turnout's next try goes to the service
directly, and would slip past it (Traefik runs that middleware again).
A POST, PATCH or LOCK is tried again on a status only with
``retryNonIdempotentMethod``. ``disableRetryOnNetworkError`` leaves
only ``status`` (it is refused without one). ``timeout``: once that long has
passed since the first try, the next failure is the client's answer.
``maxRequestBodyBytes`` (default 2 MiB, -1 no limit) bounds the body kept to
send again.

Between tries Traefik waits as its exponential backoff does (cenkalti/backoff
with ``initialInterval``, a multiplier of ``2 ** (1 / (attempts - 1))`` so the
interval at most doubles over the tries, and a randomization factor of 0.5:
each wait is drawn in ``[0.5, 1.5] x`` the current interval). Without
``initialInterval`` (Traefik v3 sets no default), or with ``attempts`` < 2,
tries follow each other at once.

Requests with a body: as Traefik, any request (a POST too) is tried again when
the backend could not be reached (nothing of it was written). Its body is
kept as it streams, up to ``maxRequestBodyBytes``: a larger body is sent once,
never retried (Traefik still retries it when nothing of it was written).

Differs from Traefik: Traefik stops retrying on a network error once the
request was written to the backend; Turnout also retries a request whose
backend dropped the connection without answering, when its method is
idempotent (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and its body, if
any, was kept. A POST that reached a backend is never sent twice on a network
error.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from proxy.config.dynamic import Retry
from proxy.http.exchange import IDEMPOTENT
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler, ResponseHead
from proxy.middlewares.chain import redispatch
from proxy.middlewares.errors import Ranges, matches, parse_ranges
from proxy.observability.metrics import REGISTRY

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

RANDOMIZATION = 0.5  # cenkalti/backoff's DefaultRandomizationFactor
MAX_REPLAY = 2 * 1024 * 1024  # Traefik's RetryDefaultMaxRequestBodyBytes
UNLIMITED = 1 << 62  # maxRequestBodyBytes = -1
# Traefik's retry counts only these as non-idempotent (for retries on a status).
NON_IDEMPOTENT = frozenset({"POST", "PATCH", "LOCK"})

_clock = time.monotonic


class _State:
    __slots__ = ("interval", "started", "timer", "tries")

    def __init__(self, interval: float, started: float) -> None:
        self.tries = 1  # the first try has been made when the first failure arrives
        self.interval = interval
        self.started = started  # when the first try began (read with ``timeout`` only)
        self.timer: asyncio.TimerHandle | None = None


class RetryHandler(Handler):
    __slots__ = ("attempts", "initial", "multiplier", "network", "replay", "states", "timeout")

    def __init__(
        self,
        name: str,
        attempts: int,
        initial: float,
        *,
        timeout: float = 0.0,
        replay: int = MAX_REPLAY,
        network: bool = True,
    ) -> None:
        super().__init__(name)
        self.attempts = attempts
        self.initial = initial if attempts >= 2 else 0.0
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts >= 2 else 1.0
        self.timeout = timeout
        self.replay = replay  # body bytes kept to send again
        self.network = network  # False: disableRetryOnNetworkError
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
        if self.attempts >= 2:
            if ex.chunked or ex.content_length:
                ex.keep_body(self.replay)
            if self.timeout:
                self.states[ex] = _State(self.initial, _clock())  # the timeout counts from here

    def _state(self, ex: Exchange) -> _State:
        state = self.states.get(ex)
        if state is None:
            state = self.states[ex] = _State(self.initial, 0.0)
        return state

    def _may_retry(self, ex: Exchange, state: _State) -> bool:
        """A try left, within ``timeout``, and the body queued to be sent again."""
        if state.tries >= self.attempts:
            return False  # exhausted: this failure is the client's answer
        if self.timeout and _clock() - state.started >= self.timeout:
            return False
        return ex.rewind_body()  # False: the body was too large to keep

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        if not self.network:
            return False  # disableRetryOnNetworkError: only ``status`` may retry
        if ex.retried or ex.response_state != 0:
            return False  # the engine re-sent it already, or the client got bytes
        if ex.reached_backend and ex.method not in IDEMPOTENT:
            return False
        state = self._state(ex)
        if not self._may_retry(ex, state):
            return False
        self._schedule(ex, state)
        return True

    def _schedule(self, ex: Exchange, state: _State) -> None:
        """Count one more try and send the request again after the backoff's wait."""
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


class StatusRetryHandler(RetryHandler):
    """With ``status``: answers with one of those statuses are failures too.

    A class of its own so that a retry without ``status`` looks at no response.
    """

    __slots__ = ("non_idempotent", "ranges")

    def __init__(
        self,
        name: str,
        attempts: int,
        initial: float,
        *,
        ranges: Ranges,
        non_idempotent: bool,
        timeout: float,
        replay: int,
        network: bool,
    ) -> None:
        super().__init__(name, attempts, initial, timeout=timeout, replay=replay, network=network)
        self.ranges = ranges
        self.non_idempotent = non_idempotent  # retryNonIdempotentMethod

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if not matches(self.ranges, head.status) or ex.upgrade is not None:
            return
        if ex.method in NON_IDEMPOTENT and not self.non_idempotent:
            return
        if ex.upstream is not None and not ex.request_done:
            return  # answered before the body ended: what follows cannot be told apart
        if ex.upstream is None and not ex.service_called:
            # A middleware inside stopped the request (auth, allow list): another
            # try goes straight to the service and would slip past it.
            return
        state = self._state(ex)
        if not self._may_retry(ex, state):
            return
        if ex.upstream is not None:
            head.replace(self._dropped)  # the backend's answer is read and dropped first
        else:
            # Turnout's own 502/503/504, or a middleware's answer: nothing to read.
            head.replace()
            self._schedule(ex, state)

    def _dropped(self, ex: Exchange) -> None:
        state = self.states.get(ex)
        if state is not None:
            self._schedule(ex, state)


@register("retry")
def build(name: str, config: Retry, context: BuildContext) -> Handler:
    if config.attempts <= 0:
        raise BuildError(f"must be a positive number of tries, got {config.attempts}", "attempts")
    if config.initial_interval < 0:
        raise BuildError("must not be negative", "initialInterval")
    if config.timeout < 0:
        raise BuildError("must not be negative", "timeout")
    if not config.status and config.disable_retry_on_network_error:
        # Traefik: "retry middleware requires at least HTTP status codes or retry on TCP".
        raise BuildError("needs status when network errors are not retried", "status")
    limit = config.max_request_body_bytes
    if limit is not None and limit < -1:
        raise BuildError("must be -1 (no limit) or more", "maxRequestBodyBytes")
    replay = MAX_REPLAY if limit is None else UNLIMITED if limit == -1 else limit
    ranges: Ranges = ()
    for index, entry in enumerate(config.status):
        try:
            ranges += parse_ranges([entry])
        except ValueError as error:
            raise BuildError(str(error), f"status[{index}]") from None
    timeout = float(config.timeout)
    network = not config.disable_retry_on_network_error
    initial = float(config.initial_interval)
    if ranges and config.attempts >= 2:
        return StatusRetryHandler(
            name,
            config.attempts,
            initial,
            ranges=ranges,
            non_idempotent=config.retry_non_idempotent_method,
            timeout=timeout,
            replay=replay,
            network=network,
        )
    return RetryHandler(
        name, config.attempts, initial, timeout=timeout, replay=replay, network=network
    )
