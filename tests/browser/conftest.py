"""Headless Chromium (Debian's package, driven by playwright) for report tests.

Never run ``playwright install``: the browser is ``/usr/bin/chromium``
(``apt-get install -y chromium``). Tests skip with that hint when it is missing.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(__file__).parent / "screenshots"
# the recipe's flags (shared/recipes/README.md section 6); playwright adds --headless and its own profile
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]  # fmt: skip

if str(ROOT) not in sys.path:  # tests/fixtures_report.py, whatever directory pytest was started from
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium chromium-driver (never `playwright install`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the python package only)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    """tests/browser/screenshots/, ignored by git through its own .gitignore."""
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / ".gitignore").write_text("*\n")
    return SHOTS
