"""Debian's Chromium driven by Playwright, for the browser tests.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``) and ``pip install playwright``
(never ``playwright install``: the tests use the system browser). A test module calls
:func:`require` at import, which skips the whole module without them, and takes the
``browser`` fixture from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# no background networking: this machine's closed network refuses those connections
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def require() -> ModuleType:
    """playwright.sync_api, or skip the calling test module with the reason."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright`")
    if not CHROMIUM.exists():
        pytest.skip("the browser test needs Debian's Chromium: apt-get install chromium", allow_module_level=True)
    return sync_api


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium for one test."""
    sync_api = require()
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()
