"""The output-contract checker copied from shared/tools, so the run-folder test never depends on a file outside the
repository; when shared/ sits beside the checkout (as in CI), the copy must still equal it."""

from pathlib import Path

import pytest

COPY = Path(__file__).with_name("check_outputs.py")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "tools" / "check_outputs.py"


def test_copy_matches_shared_checker():
    if not SHARED.exists():
        pytest.skip(f"no {SHARED}: outside the project's workplace there is nothing to compare the copy with")
    assert COPY.read_bytes() == SHARED.read_bytes(), "shared/tools/check_outputs.py changed: copy it to tests/contract"
