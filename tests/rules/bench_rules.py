"""Microseconds per `RouterTable.match`: small against large tables.

    .venv/bin/python tests/rules/bench_rules.py

Not a test (pytest does not collect it) and nothing asserts timing: it prints figures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from proxy.rules import Route, RouterTable, SimpleRequest, build_table


def host_routes(n: int) -> list[Route]:
    return [
        Route(f"svc{i}", f"Host(`svc{i}.example.com`) && PathPrefix(`/api`)", None, i)
        for i in range(n)
    ]


def table(routes: list[Route]) -> RouterTable:
    built, errors = build_table(routes)
    assert not errors, errors
    return built


def per_call_us(fn: Callable[[], object], budget_s: float = 0.4) -> float:
    runs = 1000
    while True:
        started = time.perf_counter()
        for _ in range(runs):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= budget_s:
            return elapsed / runs * 1e6
        runs *= 2


def main() -> None:
    hit = SimpleRequest("GET", "svc1234.example.com", "/api/users")
    hit_small = SimpleRequest("GET", "svc5.example.com", "/api/users")
    miss = SimpleRequest("GET", "unknown.example.com", "/api/users")

    started = time.perf_counter()
    big = table(host_routes(10_000))
    build_s = time.perf_counter() - started
    small = table(host_routes(10))

    regexps = [
        Route(f"re{i}", f"HostRegexp(`^tenant{i}-[a-z]+\\.example\\.net$`)", None, f"re{i}")
        for i in range(20)
    ]
    mixed = table(host_routes(10_000) + regexps)
    paths = table(
        [Route(f"p{i}", f"PathPrefix(`/svc{i}/`)", None, i) for i in range(10_000)]
        + [Route("health", "Path(`/health`)", None, "health")]
    )
    path_hit = SimpleRequest("GET", "any.example.com", "/svc4321/items/7")

    rows = [
        ("10 routers, hit", lambda: small.match(hit_small)),
        ("10,000 routers, hit", lambda: big.match(hit)),
        ("10,000 routers, miss (unknown host)", lambda: big.match(miss)),
        ("10,000 routers + 20 HostRegexp fallback, hit", lambda: mixed.match(hit)),
        ("10,000 PathPrefix routers, hit", lambda: paths.match(path_hit)),
        ("10,000 routers, linear scan (no index)", lambda: big.match_linear(hit)),
    ]
    print(f"build 10,000 routers: {build_s * 1e3:.0f} ms")
    for label, fn in rows:
        assert fn() is not None or "miss" in label
        print(f"{label:48s} {per_call_us(fn):8.2f} µs/match")


if __name__ == "__main__":
    main()
