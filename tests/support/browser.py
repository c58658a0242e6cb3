"""A real browser for the tests that need one: Debian's Chromium, driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.helpers import missing

#: What Chromium runs with here: no sandbox (containers), and nothing reaching out to the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the module's tests; skipped without it (failed under CI)."""
    executable = shutil.which("chromium")
    if executable is None:
        missing(
            "chromium",
            under_ci="`make test` installs Debian's chromium package",
            locally="apt-get install chromium",
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
