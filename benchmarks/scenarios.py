"""Load scenarios. Add one by appending a Scenario to SCENARIOS.

A scenario says what load is sent (`kind`: HTTP, WebSocket echo, TCP echo or TCP
bulk), at which path / listener, and which *setup* the targets need (`setup`):
targets are (re)started whenever consecutive scenarios need a different setup, so
scenarios sharing one are run back to back without restarts.

Setups:
- http         one catch-all route to the HTTP backend (/, /1m, /upload);
- routers-10k  10,000 Host routers, each to its own service, the benched one among them;
- middlewares  the catch-all route behind issue 6's typical chain (headers, stripPrefix,
               rateLimit never reached, compress on a response too small to compress);
- websocket    a catch-all route to the bundled WebSocket echo backend;
- tcp          TCP relays: to the bundled echo server and to the bulk server, and to
               PostgreSQL when pgbench-select runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.backend import LARGE_SIZE, SMALL_BODY, UPLOAD_BODY, UPLOAD_PATH
from benchmarks.backends import LARGE_URL_PATH

UPLOAD_SIZE = 64 * 1024
WS_MESSAGE_SIZE = 64
TCP_MESSAGE_SIZE = 64
TCP_BULK_SIZE = 1 << 20
TCP_GIB = 1 << 30
PGBENCH_CLIENTS = 16  # PostgreSQL forks a process per client: 16 keep a 2-core machine busy
ROUTER_COUNT = 10_000
BENCH_ROUTER = ROUTER_COUNT // 2  # the benched router sits in the middle of the table


def router_host(i: int) -> str:
    return f"r{i:05d}.bench.test"


BENCH_HOST = router_host(BENCH_ROUTER)

SETUPS = ("http", "routers-10k", "middlewares", "websocket", "tcp")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    path: str = "/"
    body_size: int = len(SMALL_BODY)  # expected response body length, checked first
    kind: str = "http"  # http | ws | tcp-echo | tcp-bulk | pgbench
    setup: str = "http"  # see SETUPS
    keepalive: bool = True  # False: a new connection per request
    connections: int | None = None  # None: the --connections option
    expected_body: bytes | None = None  # exact body to check, when small
    method: str = "GET"
    request_body_size: int = 0  # POST body bytes per request
    host_header: str | None = None  # None: 127.0.0.1:PORT
    message_size: int = 0  # ws / tcp-echo message bytes; tcp-bulk bytes per transfer (MiB multiple)
    idle: bool = False  # hold --idle-connections idle keep-alive connections during the run
    pinned: bool = False  # proxy on one CPU, load generator and backend on another
    unit: str = "req/s"
    # Checked on proxies before measuring: a response header their setup adds, and
    # a Host their setup must not route (so a catch-all cannot pass for a table).
    proxy_header: tuple[str, str] | None = None
    unrouted_host: str | None = None
    # Set when Turnout cannot run the setup yet: skip the whole scenario (True) or
    # only Turnout's rows, still measuring the peers (False).
    skip_all_without_turnout: bool = False

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
        expected_body=SMALL_BODY,
    ),
    Scenario(
        name="new-conn",
        description="GET /, 12-byte body, new connection per request",
        keepalive=False,
        expected_body=SMALL_BODY,
    ),
    Scenario(
        name="large-get",
        description="GET /1m, 1 MiB body, keep-alive",
        path=LARGE_URL_PATH,
        body_size=LARGE_SIZE,
    ),
    Scenario(
        name="post-64k",
        description="POST /upload, 64 KiB request body read by the backend, keep-alive",
        path=UPLOAD_PATH,
        method="POST",
        request_body_size=UPLOAD_SIZE,
        body_size=len(UPLOAD_BODY),
        expected_body=UPLOAD_BODY,
    ),
    Scenario(
        name="idle-heavy",
        description="GET / on the active connections while --idle-connections idle "
        "keep-alive connections stay open",
        expected_body=SMALL_BODY,
        idle=True,
    ),
    Scenario(
        name="pinned",
        description="GET /, keep-alive; proxy pinned to one CPU, load generator and "
        "backend to another",
        expected_body=SMALL_BODY,
        pinned=True,
    ),
    Scenario(
        name="routers-10k",
        description=f"GET / with Host {BENCH_HOST}, one of 10,000 Host routers",
        setup="routers-10k",
        host_header=BENCH_HOST,
        expected_body=SMALL_BODY,
        unrouted_host="unrouted.bench.test",
    ),
    Scenario(
        name="middlewares",
        description="GET / through a chain: headers, stripPrefix, rateLimit (never "
        "reached), compress (response too small to compress)",
        setup="middlewares",
        expected_body=SMALL_BODY,
        skip_all_without_turnout=True,
        proxy_header=("x-bench-response", "1"),
    ),
    Scenario(
        name="websocket",
        description=f"WebSocket echo, {WS_MESSAGE_SIZE}-byte binary messages, one in "
        "flight per connection",
        setup="websocket",
        kind="ws",
        message_size=WS_MESSAGE_SIZE,
        unit="msg/s",
    ),
    Scenario(
        name="tcp-small",
        description=f"TCP relay, {TCP_MESSAGE_SIZE}-byte messages echoed, one in flight "
        "per connection",
        setup="tcp",
        kind="tcp-echo",
        message_size=TCP_MESSAGE_SIZE,
        unit="msg/s",
    ),
    Scenario(
        name="tcp-bulk",
        description="TCP relay, 1 MiB downloads (a 1-byte request, 1 MiB back)",
        setup="tcp",
        kind="tcp-bulk",
        message_size=TCP_BULK_SIZE,
        unit="MiB/s",
    ),
    Scenario(
        name="tcp-gib",
        description="TCP relay, 1 GiB through one connection (1,024 request bytes, each "
        "answered by 1 MiB), again and again",
        setup="tcp",
        kind="tcp-bulk",
        message_size=TCP_GIB,
        connections=1,
        unit="GiB/s",
    ),
    Scenario(
        name="pgbench-select",
        description="PostgreSQL through the TCP relay: pgbench -S (select-only, scale 1), "
        "one connection per client for the whole run",
        setup="tcp",
        kind="pgbench",
        connections=PGBENCH_CLIENTS,
        unit="TPS",
    ),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]
DEFAULT_SCENARIOS = list(SCENARIO_NAMES)


def get_scenarios(names: list[str]) -> list[Scenario]:
    """Scenarios in SCENARIOS order (so that those sharing a setup run back to back)."""
    if names == ["all"]:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        raise ValueError(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIO_NAMES)}"
        )
    return [s for s in SCENARIOS if s.name in names]
