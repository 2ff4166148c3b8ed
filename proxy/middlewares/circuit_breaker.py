"""circuitBreaker: stop calling a failing service for a while (Traefik's, on oxy's cbreaker).

States, as oxy defines them:

- standby (closed): requests pass and are measured; at most every
  ``checkPeriod`` (after a response) the expression is evaluated over the last
  10 seconds of measures. True trips the breaker: metrics are reset.
- tripped (open): for ``fallbackDuration`` every request gets ``responseCode``
  (default 503) with the status text as body, and the service is not called.
- recovering: for ``recoveryDuration`` a growing share of requests passes
  (half the elapsed fraction of the duration, as oxy's ratio controller);
  the others get the fallback. Then back to standby. The expression is not
  evaluated while recovering.

Each router using the middleware has a breaker of its own, as Traefik builds
a middleware instance per router. Measures come from ``on_done``: the final
status (0 when no response was sent), and the time from the request to the
end of the response. 502 and 504 count as network errors, as in oxy, and so
does 0.

The expression: ``NetworkErrorRatio()``, ``ResponseCodeRatio(from, to,
dividedByFrom, dividedByTo)`` (codes in [from, to) over codes in
[dividedByFrom, dividedByTo), 0 when that is empty), ``LatencyAtQuantileMS(q)``
compared with ``> >= < <= == !=`` to numbers, joined by ``&&`` and ``||`` with
parentheses.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.dynamic import CircuitBreaker
from proxy.http.errors import reason
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

WINDOW = 10  # seconds of measures, in one-second buckets (oxy's RTMetrics)
SAMPLES_PER_BUCKET = 1024  # latency samples kept per second (a uniform reservoir)

STANDBY, TRIPPED, RECOVERING = "standby", "tripped", "recovering"


class Bucket:
    __slots__ = ("codes", "count", "latencies", "net_errors", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.count = 0
        self.net_errors = 0
        self.codes: dict[int, int] = {}
        self.latencies: list[float] = []


class Metrics:
    """A rolling window of per-second buckets: counts, codes and latency samples."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: list[Bucket] = []

    def reset(self) -> None:
        self.buckets = []

    def record(self, status: int, latency: float, now: float) -> None:
        second = int(now)
        buckets = self.buckets
        if not buckets or buckets[-1].second != second:
            buckets.append(Bucket(second))
        self._trim(second)
        bucket = buckets[-1]
        bucket.count += 1
        if status == 0 or status in (502, 504):
            bucket.net_errors += 1
        if status:
            bucket.codes[status] = bucket.codes.get(status, 0) + 1
        samples = bucket.latencies
        if len(samples) < SAMPLES_PER_BUCKET:
            samples.append(latency)
        else:
            slot = random.randrange(bucket.count)
            if slot < SAMPLES_PER_BUCKET:
                samples[slot] = latency

    def _trim(self, second: int) -> None:
        oldest = second - WINDOW + 1
        while self.buckets and self.buckets[0].second < oldest:
            del self.buckets[0]

    def live(self, now: float) -> list[Bucket]:
        self._trim(int(now))
        return self.buckets

    def network_error_ratio(self, now: float) -> float:
        buckets = self.live(now)
        total = sum(b.count for b in buckets)
        return sum(b.net_errors for b in buckets) / total if total else 0.0

    def response_code_ratio(self, now: float, low: int, high: int, dlow: int, dhigh: int) -> float:
        part = whole = 0
        for bucket in self.live(now):
            for code, count in bucket.codes.items():
                if low <= code < high:
                    part += count
                if dlow <= code < dhigh:
                    whole += count
        return part / whole if whole else 0.0

    def latency_at_quantile_ms(self, now: float, quantile: float) -> float:
        samples = sorted(s for b in self.live(now) for s in b.latencies)
        if not samples:
            return 0.0
        index = min(len(samples) - 1, max(0, math.ceil(quantile / 100 * len(samples)) - 1))
        return samples[index] * 1000.0


Condition = Callable[[Metrics, float], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>&&|\|\||>=|<=|==|!=|[><(),]))"
)
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_FUNCTIONS = {"NetworkErrorRatio": 0, "ResponseCodeRatio": 4, "LatencyAtQuantileMS": 1}


class ExpressionError(ValueError):
    pass


def parse_expression(text: str) -> Condition:
    """Compile an oxy circuit-breaker expression into a predicate over metrics."""
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected {text[position:].strip()[:20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise ExpressionError("empty expression")
    parser = _Parser(tokens)
    condition = parser.disjunction()
    if parser.index != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.index][1]!r}")
    return condition


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> str:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else ""

    def take(self, kind: str, what: str) -> str:
        if self.index >= len(self.tokens) or self.tokens[self.index][0] != kind:
            found = self.peek() or "the end"
            raise ExpressionError(f"expected {what}, found {found!r}")
        self.index += 1
        return self.tokens[self.index - 1][1]

    def expect(self, op: str) -> None:
        if self.peek() != op:
            raise ExpressionError(f"expected {op!r}, found {self.peek() or 'the end'!r}")
        self.index += 1

    def disjunction(self) -> Condition:
        terms = [self.conjunction()]
        while self.peek() == "||":
            self.index += 1
            terms.append(self.conjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda m, now: any(term(m, now) for term in terms)

    def conjunction(self) -> Condition:
        terms = [self.comparison()]
        while self.peek() == "&&":
            self.index += 1
            terms.append(self.comparison())
        if len(terms) == 1:
            return terms[0]
        return lambda m, now: all(term(m, now) for term in terms)

    def comparison(self) -> Condition:
        if self.peek() == "(":
            self.index += 1
            inner = self.disjunction()
            self.expect(")")
            return inner
        metric = self.metric()
        op = self.peek()
        if op not in _COMPARE:
            raise ExpressionError(f"expected a comparison after the function, found {op!r}")
        self.index += 1
        threshold = float(self.take("num", "a number"))
        compare = _COMPARE[op]
        return lambda m, now: compare(metric(m, now), threshold)

    def metric(self) -> Callable[[Metrics, float], float]:
        name = self.take("name", "a function")
        if name not in _FUNCTIONS:
            raise ExpressionError(f"unknown function {name!r}")
        self.expect("(")
        args: list[float] = []
        while self.peek() != ")":
            if args:
                self.expect(",")
            args.append(float(self.take("num", "a number")))
        self.index += 1
        if len(args) != _FUNCTIONS[name]:
            raise ExpressionError(f"{name} takes {_FUNCTIONS[name]} arguments, got {len(args)}")
        if name == "NetworkErrorRatio":
            return lambda m, now: m.network_error_ratio(now)
        if name == "LatencyAtQuantileMS":
            quantile = args[0]
            if not 0 < quantile <= 100:
                raise ExpressionError("LatencyAtQuantileMS takes a quantile in (0, 100]")
            return lambda m, now: m.latency_at_quantile_ms(now, quantile)
        low, high, dlow, dhigh = (int(a) for a in args)
        if low >= high or dlow >= dhigh:
            raise ExpressionError("ResponseCodeRatio ranges must be from < to")
        return lambda m, now: m.response_code_ratio(now, low, high, dlow, dhigh)


class Breaker:
    """The state of one router's breaker (Traefik builds a middleware per router)."""

    __slots__ = ("allowed", "denied", "last_check", "metrics", "recovery_start", "state", "until")

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.state = STANDBY
        self.until = 0.0
        self.last_check = 0.0
        self.recovery_start = 0.0
        self.allowed = 0
        self.denied = 0


class CircuitBreakerHandler(Handler):
    __slots__ = (
        "breakers",
        "check_period",
        "condition",
        "fallback",
        "fallback_duration",
        "recovery_duration",
        "started",
    )

    def __init__(
        self,
        name: str,
        condition: Condition,
        check_period: float,
        fallback_duration: float,
        recovery_duration: float,
        response_code: int,
    ) -> None:
        super().__init__(name)
        self.condition = condition
        self.check_period = check_period
        self.fallback_duration = fallback_duration
        self.recovery_duration = recovery_duration
        self.fallback = Answer(
            response_code,
            [(b"Content-Type", b"text/plain; charset=utf-8")],
            reason(response_code).encode(),
        )
        self.breakers: dict[str, Breaker] = {}  # by router
        self.started: dict[Exchange, tuple[Breaker, float]] = {}  # exchanges let through

    def on_request(self, ex: Exchange) -> Answer | None:
        route = ex.route
        assert route is not None
        breaker = self.breakers.get(route.router)
        if breaker is None:
            breaker = self.breakers[route.router] = Breaker()
        now = time.monotonic()
        if breaker.state is not STANDBY and self._blocks(breaker, now):
            return self.fallback
        self.started[ex] = (breaker, now)
        return None

    def _blocks(self, breaker: Breaker, now: float) -> bool:
        if breaker.state is TRIPPED:
            if now < breaker.until:
                return True
            breaker.state = RECOVERING
            breaker.until = now + self.recovery_duration
            breaker.recovery_start = now
            breaker.allowed = breaker.denied = 0
        if now > breaker.until:
            breaker.state = STANDBY
            return False
        # oxy's ratio controller: allow while allowed/(allowed+denied) stays under
        # half the elapsed fraction of the recovery duration.
        target = 0.5 * (now - breaker.recovery_start) / self.recovery_duration
        if (breaker.allowed + 1) / (breaker.allowed + breaker.denied + 1) < target:
            breaker.allowed += 1
            return False
        breaker.denied += 1
        return True

    def on_done(self, ex: Exchange, status: int) -> None:
        entry = self.started.pop(ex, None)
        if entry is None:
            return  # answered by the fallback, or stopped before this handler
        breaker, started = entry
        now = time.monotonic()
        breaker.metrics.record(status, now - started, now)
        if breaker.state is STANDBY and now >= breaker.last_check:
            breaker.last_check = now + self.check_period
            if self.condition(breaker.metrics, now):
                breaker.state = TRIPPED
                breaker.until = now + self.fallback_duration
                breaker.metrics.reset()


@register("circuit_breaker")
def build(name: str, config: CircuitBreaker, context: BuildContext) -> Handler:
    try:
        condition = parse_expression(config.expression)
    except ExpressionError as error:
        raise BuildError(str(error), "expression") from None
    for key, value in (
        ("checkPeriod", config.check_period),
        ("fallbackDuration", config.fallback_duration),
        ("recoveryDuration", config.recovery_duration),
    ):
        if value < 0:
            raise BuildError("must not be negative", key)
    code = config.response_code or 503
    if not 100 <= code <= 599:
        raise BuildError("must be an HTTP status code (100-599)", "responseCode")
    return CircuitBreakerHandler(
        name,
        condition,
        float(config.check_period) or 0.1,  # 0: oxy's defaults
        float(config.fallback_duration) or 10.0,
        float(config.recovery_duration) or 10.0,
        code,
    )
