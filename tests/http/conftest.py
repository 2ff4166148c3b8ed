"""The integration fixtures (real turnout processes with the per-test leak check) for HTTP tests."""

from __future__ import annotations

from tests.integration.conftest import turnout  # noqa: F401  (fixture)
