"""Smoke tests for the benchmark harness (not for speed: nothing here asserts a rate).

- the bundled load generator against the bundled backend, for about a second;
- the wrk output parser on real captured wrk output (data/), and on a live 1 s wrk
  run against the bundled backend when wrk is installed (required when CI=true);
- the latency histogram.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import loadgen, wrk
from benchmarks.backends import BundledBackend
from benchmarks.procs import http_get
from benchmarks.record import bucket_bounds, bucket_index, percentile

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledBackend]:
    b = BundledBackend()
    try:
        b.start(tmp_path_factory.mktemp("bench-backend"))
        yield b
    finally:
        b.stop()
    assert b.server is not None and not b.server.running()


def test_bundled_backend_serves_both_resources(backend: BundledBackend) -> None:
    small = http_get(backend.port, "/")
    assert (small.status, small.body) == (200, b"hello world\n")
    large = http_get(backend.port, "/1m")
    assert large.status == 200 and len(large.body) == 1 << 20


def test_bundled_loadgen_against_bundled_backend(backend: BundledBackend) -> None:
    res = loadgen.run(backend.url("/"), connections=8, duration=1.0)
    assert res.tool == "bundled"
    assert res.requests > 0
    assert res.requests_per_s > 0
    assert res.errors == 0 and res.non_2xx == 0
    assert 0 < res.p50_us <= res.p99_us
    assert res.p99_us < 5_000_000  # below the per-request timeout: the values are sane


def test_bundled_loadgen_new_connection_per_request(backend: BundledBackend) -> None:
    res = loadgen.run(backend.url("/"), connections=4, duration=0.5, keepalive=False)
    assert res.requests > 0 and res.errors == 0
    assert 0 < res.p50_us <= res.p99_us


def test_histogram_buckets_and_percentiles() -> None:
    for v in (0, 1, 127, 128, 129, 255, 256, 1000, 123_456, 10**9):
        low, high = bucket_bounds(bucket_index(v))
        assert low <= v < high
        assert high - low <= max(1, v // 64)  # about 1.6 % resolution
    # Buckets are contiguous and increasing.
    prev_high = 0
    for i in range(1500):
        low, high = bucket_bounds(i)
        assert low == prev_high
        prev_high = high
    hist = {bucket_index(v): 1 for v in range(1, 101)}  # 1..100 us, one each
    assert percentile(hist, 50) == 50
    assert percentile(hist, 99) == 99
    assert percentile({}, 50) == 0.0


@pytest.mark.parametrize(
    ("sample", "requests", "duration", "rps", "p50", "p99", "errors", "non_2xx"),
    [
        ("wrk_small_get.txt", 224877, 3.0, 74936.49, 617.0, 1270.0, 0, 0),
        ("wrk_large_get.txt", 3117, 1.0, 3106.04, 1710.0, 3340.0, 0, 0),
        ("wrk_non2xx.txt", 1737, 1.0, 1735.24, 1670.0, 11080.0, 0, 1737),
        ("wrk_socket_errors.txt", 0, 3.1, 0.0, 0.0, 0.0, 21518, 0),
    ],
)
def test_wrk_parser_on_captured_output(
    sample: str,
    requests: int,
    duration: float,
    rps: float,
    p50: float,
    p99: float,
    errors: int,
    non_2xx: int,
) -> None:
    res = wrk.parse((DATA / sample).read_text())
    assert res.tool == "wrk"
    assert res.requests == requests
    assert res.duration_s == pytest.approx(duration)
    assert res.requests_per_s == pytest.approx(rps)
    assert res.p50_us == pytest.approx(p50)
    assert res.p99_us == pytest.approx(p99)
    assert res.errors == errors
    assert res.non_2xx == non_2xx
    assert res.extra["connections"] > 0


def test_wrk_parser_rejects_output_without_latency_distribution() -> None:
    text = (DATA / "wrk_small_get.txt").read_text()
    cut = "\n".join(line for line in text.splitlines() if not line.strip().startswith("99%"))
    with pytest.raises(wrk.WrkParseError):
        wrk.parse(cut)
    with pytest.raises(wrk.WrkParseError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_real_run_parses(backend: BundledBackend) -> None:
    if wrk.available() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed and CI=true (apt-get install -y wrk)")
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    res = wrk.run(backend.url("/"), connections=8, duration=1)
    assert "Latency Distribution" in res.extra["raw"]
    assert res.requests > 0 and res.requests_per_s > 0
    assert res.errors == 0 and res.non_2xx == 0
    assert 0 < res.p50_us <= res.p99_us
