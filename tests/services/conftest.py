from tests.integration.conftest import backend, turnout  # noqa: F401  (fixtures)
