"""The in-memory measure of the hot path (benchmarks/hotpath.py) keeps working.

Each mode drives real requests through Turnout's client and upstream Protocols and
checks the first one in full (what reached the backend, what the client got); no
figure is asserted.
"""

from __future__ import annotations

from benchmarks import hotpath


def test_keep_alive_requests_run() -> None:
    assert hotpath.run(50) > 0


def test_requests_on_new_connections_run() -> None:
    # Checks that the response to a Connection: close request says so.
    assert hotpath.run(50, new_connections=True) > 0
