"""The integration fixtures (real turnout processes with the per-test leak check) for TCP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import backend, turnout  # noqa: F401  (fixtures)


@pytest.fixture(params=["splice", "protocol"])
def relay(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once per relay: kernel splice, and the Protocol relay forced by env."""
    if request.param == "protocol":
        monkeypatch.setenv("TURNOUT_TCP_RELAY", "protocol")
    else:
        monkeypatch.delenv("TURNOUT_TCP_RELAY", raising=False)
    yield request.param
