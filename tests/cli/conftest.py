"""Fixtures for the CLI tests: real ``shoal serve`` processes and the database servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.processes import ShoalServer, shoal_serve


@pytest.fixture(scope="module")
def slowdb() -> Iterator[ShoalServer]:
    """``shoal serve --slowdb`` shared by the tests of one module (they use distinct keys)."""
    with shoal_serve("--slowdb") as server:
        yield server
