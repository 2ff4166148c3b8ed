"""A chain of rateLimit, inFlightReq and a path rewrite behaves as its parts do."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Backend, Turnout, get
from tests.middlewares.traffic import (  # noqa: F401  (fixtures)
    check,
    host_router,
    module_backend_fixture,
    module_proxy_fixture,
    service,
)

DYNAMIC = """
[http.middlewares.guard.chain]
middlewares = ["zip", "limit", "slots", "prefix"]
[http.middlewares.zip.compress]
minResponseBodyBytes = 1
[http.middlewares.limit.rateLimit]
average = 1
period = "10s"
burst = 3
[http.middlewares.limit.rateLimit.sourceCriterion]
requestHeaderName = "X-Tenant"
[http.middlewares.slots.inFlightReq]
amount = 1
[http.middlewares.prefix.addPrefix]
prefix = "/api"
"""


def test_chain_of_traffic_middlewares(
    module_backend: Backend, module_proxy: Callable[..., Turnout]
) -> None:
    server = module_backend
    router = host_router("app", ["guard"], "PathPrefix(`/`)")
    proxy = module_proxy(DYNAMIC + router + service(server.url))
    tenant = "X-Tenant: a\r\n"
    # inFlightReq releases each slot (sequential requests never hit amount = 1),
    # the rate limit admits its burst, and addPrefix runs after both.
    assert [get(proxy.port, "/x", headers=tenant).status for _ in range(4)] == [200, 200, 200, 429]
    assert [r.target for r in server.requests] == ["/api/x"] * 3
    zipped = get(proxy.port, "/y", headers="X-Tenant: b\r\nAccept-Encoding: gzip\r\n")
    assert zipped.status == 200
    assert zipped.header("Content-Encoding") == "gzip"
    assert zlib.decompress(zipped.body, 31) == b"ok"
    assert server.requests[-1].target == "/api/y"
    # The rate limit's own 429 passes through compress, outside it, on its way out.
    refused = get(proxy.port, "/z", headers=tenant + "Accept-Encoding: gzip\r\n")
    assert refused.status == 429
    assert refused.header("Vary") == "Accept-Encoding"
    assert refused.header("Content-Encoding") == "gzip"
    assert zlib.decompress(refused.body, 31) == b"Too Many Requests"


def test_a_bad_member_is_reported_under_its_own_name(tmp_path: Path) -> None:
    code, output = check(tmp_path, DYNAMIC.replace("amount = 1", "amount = -5"))
    assert code != 0
    assert "http.middlewares.slots.inFlightReq.amount: amount must not be negative" in output
