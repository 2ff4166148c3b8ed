"""The integration suite's fixtures: real ``turnout run`` processes and recording backends."""

from tests.integration.conftest import backend, turnout  # noqa: F401
