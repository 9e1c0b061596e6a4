"""Flow tests use the session-wide ``prefect_harness`` fixture of tests/conftest.py."""
