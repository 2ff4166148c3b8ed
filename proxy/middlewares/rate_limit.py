"""rateLimit: a token bucket per source, in memory or shared through Redis (Traefik's ratelimiter).

Traefik's semantics, from pkg/middlewares/ratelimiter:

- rate = average / period tokens per second (period 0 is 1 s); ``average`` 0
  means no limit at all. The bucket holds ``burst`` tokens (at least 1) and a
  new source starts full.
- A request reserves one token (golang.org/x/time/rate ``Reserve``). When the
  bucket is empty the reservation has a delay; up to ``maxDelay`` (half the
  interval between two tokens, 0.5 s below one token per second) the request
  waits that long and goes on; past it the reservation is cancelled and the
  answer is 429 with ``Retry-After`` (whole seconds, rounded up) and
  ``X-Retry-In`` (a Go duration).
- Each router using the middleware has buckets of its own, as Traefik builds a
  middleware instance per router.
- Buckets idle for ``ttl`` (2 s for rates of at least one per second, else
  1 + 1/rate seconds) are forgotten, and at most 65536 sources are kept, the
  least recently seen going first: memory stays bounded whatever the sources.

With ``redis`` the bucket lives in Redis and one Lua script takes each decision
atomically with the server's clock, so several Turnout instances share a limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from proxy.config.dynamic import RateLimit, RedisStore
from proxy.middlewares import register
from proxy.middlewares.base import PENDING, Answer, BuildContext, BuildError, Handler, Pending
from proxy.middlewares.chain import answer, resume
from proxy.middlewares.source_criterion import SourceFunc, client_ip, source_extractor

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

MAX_SOURCES = 65536  # Traefik's maxSources

_monotonic = time.monotonic


class Limits:
    """The numbers Traefik derives from average, period and burst."""

    __slots__ = ("burst", "max_delay", "rate", "ttl")

    def __init__(self, average: int, period: float, burst: int) -> None:
        self.burst = max(burst, 1)
        period = period or 1.0
        self.rate = average / period if average > 0 else math.inf
        self.max_delay = 0.0
        ttl = 1
        if self.rate != math.inf:
            # time.Second / (time.Duration(rtl) * 2): the rate truncated to an integer.
            self.max_delay = 0.5 if self.rate < 1 else 1.0 / (int(self.rate) * 2)
        if self.rate >= 1:
            ttl += 1
        elif self.rate > 0:
            ttl += int(1 / self.rate)
        self.ttl = ttl


def too_many(wait: float) -> Answer:
    return Answer(
        429,
        [
            (b"Retry-After", b"%d" % math.ceil(wait)),
            (b"X-Retry-In", go_duration(int(wait * 1e9)).encode()),
            (b"Content-Type", b"text/plain; charset=utf-8"),
        ],
        b"Too Many Requests",
    )


def go_duration(ns: int) -> str:
    """Go's time.Duration.String: "1.5s", "250ms", "1m0.5s"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            unit, div = "ns", 1
        elif u < 1_000_000:
            unit, div = "µs", 1_000
        else:
            unit, div = "ms", 1_000_000
        whole, frac = divmod(u, div)
        digits = len(str(div)) - 1
        text = str(whole) + (("." + f"{frac:0{digits}d}".rstrip("0")) if frac else "")
        return sign + text + unit
    seconds, frac_ns = divmod(u, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    out += str(secs) + (("." + f"{frac_ns:09d}".rstrip("0")) if frac_ns else "") + "s"
    return out


class RateLimitHandler(Handler):
    """In-memory buckets: ``{(router, source): (tokens, last)}``, oldest activity first."""

    __slots__ = (
        "buckets",
        "burst",
        "by_client",
        "limits",
        "max_delay",
        "rate",
        "source",
        "sweep_at",
        "ttl",
    )

    def __init__(self, name: str, limits: Limits, source: SourceFunc) -> None:
        super().__init__(name)
        if limits.rate == math.inf:
            raise ValueError("no limit: build a NoRateLimit")
        self.limits = limits
        self.source = source
        self.by_client = source is client_ip  # the default: read without a call
        # Read on every request: kept here rather than one attribute further.
        self.rate = limits.rate
        self.burst = float(limits.burst)
        self.max_delay = limits.max_delay
        self.ttl = limits.ttl
        # Insertion order is activity order: each use re-inserts its bucket, so the
        # first entries are the ones to expire (the ttl is the same for all).
        # A bucket is (tokens, time of the last reservation, also its last activity).
        self.buckets: dict[Hashable, tuple[float, float]] = {}
        # No bucket expires before this (the oldest one's activity + ttl, as of the
        # last sweep, a microsecond early against rounding): only then is one due.
        self.sweep_at = -math.inf

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        source = ex.client_ip if self.by_client else self.source(ex)
        # Traefik builds a middleware once per router: each router has its own buckets.
        key = (ex.route.router, source)  # type: ignore[union-attr]  # routed: it runs its chain
        wait = self.reserve(key, _monotonic())
        if wait <= 0.0:
            return None
        if wait > self.max_delay:
            return too_many(wait)
        asyncio.get_running_loop().call_later(wait, resume, ex)
        return PENDING

    def reserve(self, key: Hashable, now: float) -> float:
        """Take a token for ``key``; the delay before it may be used (0: now)."""
        buckets = self.buckets
        bucket = buckets.pop(key, None)
        if now >= self.sweep_at or (bucket is None and len(buckets) >= MAX_SOURCES):
            self._expire(now)
        if bucket is None:
            tokens = self.burst - 1.0  # a new source starts full
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            burst = self.burst
            tokens = (burst if tokens > burst else tokens) - 1.0
        if tokens >= 0.0:
            buckets[key] = (tokens, now)
            return 0.0
        wait = -tokens / self.rate
        if wait > self.max_delay:
            tokens += 1.0  # Reservation.Cancel (tokens < 0: the result stays below burst)
        buckets[key] = (tokens, now)
        return wait

    def _expire(self, now: float) -> None:
        buckets = self.buckets
        deadline = now - self.ttl
        while buckets:
            key, (_, last) = next(iter(buckets.items()))
            if last > deadline and len(buckets) < MAX_SOURCES:
                self.sweep_at = last + self.ttl - 1e-6
                return
            del buckets[key]
        # The bucket about to be inserted is the oldest.
        self.sweep_at = now + self.ttl - 1e-6


class NoRateLimit(Handler):
    """``average`` 0: no limit at all, so no hook to run."""

    __slots__ = ()


# One decision, atomically, on the server's clock (no skew between instances).
# Same arithmetic as RateLimitHandler.reserve; numbers kept with 17 digits.
RESERVE_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local max_delay = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
if now < last then last = now end
tokens = math.min(burst, tokens + (now - last) * rate) - 1
local wait = 0
if tokens < 0 then
  wait = -tokens / rate
  if wait > max_delay then tokens = math.min(burst, tokens + 1) end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'last', string.format('%.17g', now))
redis.call('EXPIRE', KEYS[1], ttl)
return string.format('%.17g', wait)
"""


class RedisRateLimitHandler(Handler):
    """Buckets in Redis; each request waits for the script's verdict (PENDING)."""

    __slots__ = ("args", "client", "limits", "prefix", "script", "source", "tasks")

    def __init__(self, name: str, limits: Limits, source: SourceFunc, client: Any) -> None:
        super().__init__(name)
        self.limits = limits
        self.source = source
        self.client = client
        self.script = client.register_script(RESERVE_SCRIPT)
        self.prefix = f"turnout:ratelimit:{name}:"
        self.args = (repr(limits.rate), limits.burst, limits.ttl, repr(limits.max_delay))
        self.tasks: set[asyncio.Task[None]] = set()

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        if self.limits.rate == math.inf:
            return None
        route = ex.route
        assert route is not None
        key = f"{self.prefix}{route.router}:{self.source(ex)}"
        task = asyncio.ensure_future(self._decide(ex, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return PENDING

    async def _decide(self, ex: Exchange, key: str) -> None:
        try:
            wait = float(await self.script(keys=[key], args=list(self.args)))
        except Exception as error:  # Redis down or slow: Traefik answers 500
            answer(
                ex,
                Answer(
                    500,
                    [(b"Content-Type", b"text/plain; charset=utf-8")],
                    b"could not insert/update bucket: " + type(error).__name__.encode(),
                ),
            )
            return
        if wait <= 0.0:
            resume(ex)
        elif wait > self.limits.max_delay:
            answer(ex, too_many(wait))
        else:
            asyncio.get_running_loop().call_later(wait, resume, ex)

    async def close(self) -> None:
        # A decision still waiting gets a connection error and answers 500 to a
        # client that is usually gone: the handler is closed once no exchange holds it.
        await self.client.aclose()


def redis_client(store: RedisStore) -> Any:
    if not store.endpoints:
        raise BuildError("at least one endpoint is needed", "redis.endpoints")
    if store.tls is not None:
        raise BuildError("TLS to Redis is not supported yet", "redis.tls")
    if store.db < 0:
        raise BuildError("db must not be negative", "redis.db")
    for key, value in (
        ("readTimeout", store.read_timeout),
        ("writeTimeout", store.write_timeout),
        ("dialTimeout", store.dial_timeout),
    ):
        if value < 0:
            raise BuildError("must not be negative", f"redis.{key}")
    host, sep, port = store.endpoints[0].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BuildError(f"expected HOST:PORT, got {store.endpoints[0]!r}", "redis.endpoints[0]")
    # Only configurations that use Redis pay the import.
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis(
        host=host.strip("[]"),
        port=int(port),
        db=store.db,
        username=store.username or None,
        password=store.password or None,
        socket_timeout=max(store.read_timeout, store.write_timeout) or None,
        socket_connect_timeout=store.dial_timeout or None,
        max_connections=store.pool_size or store.max_active_conns or None,
        # One immediate retry for a pooled connection the server closed; no
        # backoff loop holding requests while Redis is down.
        retry=Retry(NoBackoff(), 1),
    )


@register("rate_limit")
def build(name: str, config: RateLimit, context: BuildContext) -> Handler:
    if config.average < 0:
        raise BuildError("average must not be negative", "average")
    if config.period < 0:
        raise BuildError("negative value not valid for period", "period")
    if config.burst < 0:
        raise BuildError("burst must not be negative", "burst")
    limits = Limits(config.average, float(config.period), config.burst)
    source = source_extractor(config.source_criterion)
    if config.redis is not None:
        return RedisRateLimitHandler(name, limits, source, redis_client(config.redis))
    if limits.rate == math.inf:
        return NoRateLimit(name)
    return RateLimitHandler(name, limits, source)
