"""Load scenarios. Add one by appending a Scenario to SCENARIOS."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.backend import LARGE_SIZE, SMALL_BODY
from benchmarks.backends import LARGE_URL_PATH


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    path: str
    body_size: int  # expected response body length, checked before measuring
    keepalive: bool = True  # False: a new connection per request
    connections: int | None = None  # None: the --connections option
    expected_body: bytes | None = None  # exact body to check, when small

    def conns(self, default: int) -> int:
        return self.connections or default

    def check_body(self, body: bytes) -> str | None:
        """Why `body` is not what this scenario's path should return (None if it is)."""
        if self.expected_body is not None and body != self.expected_body:
            return f"expected body {self.expected_body!r}, got {body[:80]!r}"
        if len(body) != self.body_size:
            return f"expected a {self.body_size}-byte body, got {len(body)} bytes"
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("expected_body")
        return d


SCENARIOS: list[Scenario] = [
    Scenario(
        name="small-get",
        description="GET /, 12-byte body, keep-alive",
        path="/",
        body_size=len(SMALL_BODY),
        expected_body=SMALL_BODY,
    ),
    Scenario(
        name="large-get",
        description="GET /1m, 1 MiB body, keep-alive",
        path=LARGE_URL_PATH,
        body_size=LARGE_SIZE,
    ),
    Scenario(
        name="new-conn",
        description="GET /, 12-byte body, new connection per request",
        path="/",
        body_size=len(SMALL_BODY),
        keepalive=False,
        expected_body=SMALL_BODY,
    ),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]
DEFAULT_SCENARIOS = ["small-get"]


def get_scenarios(names: list[str]) -> list[Scenario]:
    by_name = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIO_NAMES)}"
        )
    return [by_name[n] for n in names]
