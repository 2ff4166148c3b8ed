"""Real database traffic through HostSNI(`*`): psql and pgbench -S against PostgreSQL,
redis-benchmark against Redis, zero errors, and nothing left open in Turnout afterwards."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.support import require_binary
from tests.tcp.databases import Postgres, Redis
from tests.tcp.support import tcp_router, tcp_service


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.stop()


def test_psql_and_pgbench_through_the_proxy(turnout, postgres, relay) -> None:
    proxy = turnout(tcp_router("pg", "HostSNI(`*`)", "pg") + tcp_service("pg", postgres.port))
    done = Postgres.psql(proxy.port, "select 6 * 7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
    pgbench = require_binary("pgbench")
    common = ["-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres"]
    init = subprocess.run(
        [pgbench, "-i", "-s", "1", "-q", *common, "postgres"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    bench = subprocess.run(
        [pgbench, "-S", "-T", "3", "-c", "8", "-j", "2", *common, "postgres"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bench.returncode == 0, bench.stdout + bench.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)", bench.stdout)
    assert processed is not None and int(processed.group(1)) > 100, bench.stdout
    failed = re.search(r"number of failed transactions: (\d+)", bench.stdout)
    assert failed is None or failed.group(1) == "0", bench.stdout
    assert "error" not in bench.stderr.lower(), bench.stderr


def test_redis_benchmark_through_the_proxy(turnout, tmp_path: Path, relay) -> None:
    redis = Redis(tmp_path)
    try:
        proxy = turnout(tcp_router("r", "HostSNI(`*`)", "r") + tcp_service("r", redis.port))
        done = subprocess.run(
            [
                require_binary("redis-benchmark"),
                "-h",
                "127.0.0.1",
                "-p",
                str(proxy.port),
                "-q",
                "-n",
                "20000",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        results = re.findall(r"^(\S[^:]*): ([\d.]+) requests per second", done.stdout, re.M)
        assert len(results) >= 10, done.stdout
        assert all(float(rate) > 0 for _, rate in results)
        assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    finally:
        redis.stop()
