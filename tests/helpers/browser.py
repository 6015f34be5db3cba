"""Headless Chromium for the tests of the dashboard: Debian's ``chromium`` (see
scripts/system-deps.sh) driven by Playwright, which downloads no browser of its own."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from helpers.cluster_views import missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

__all__ = ["chromium_path", "chromium", "Watched", "watched_page"]

CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The system Chromium (``SHOAL_CHROMIUM`` overrides); skips the test without one
    (fails it under ``CI=true``)."""
    given = os.environ.get("SHOAL_CHROMIUM")
    if given:
        return given
    found = next(filter(None, map(shutil.which, CANDIDATES)), None)
    if found is None:
        missing("no Chromium: run scripts/system-deps.sh (Debian package chromium)")
    return found


def chromium() -> Iterator[Browser]:
    """A headless Chromium for the block (a generator, for a fixture)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed: scripts/venv.sh dev")
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and everything it reported: console errors and uncaught exceptions."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def _exception(self, error: Error) -> None:
        self.errors.append(f"exception: {error}")


def watched_page(browser: Browser) -> Iterator[Watched]:
    """A new page whose console errors and exceptions are collected (a generator)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        watched = Watched(page)
        page.on("console", watched._console)
        page.on("pageerror", watched._exception)
        yield watched
    finally:
        context.close()
