import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (started once: ~10-15 s)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
