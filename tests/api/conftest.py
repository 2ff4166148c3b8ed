"""The API suites run real turnout processes: the integration fixtures, shared."""

from tests.integration.conftest import backend, turnout  # noqa: F401  (fixtures)
