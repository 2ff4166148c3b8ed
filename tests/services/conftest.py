from tests.integration.conftest import backend, turnout  # noqa: F401  (fixtures)
from tests.services.support import processes  # noqa: F401  (fixture)
