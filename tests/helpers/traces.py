"""Where the public cache traces live for the tests: ``shared/traces`` beside the repository.

Tests that replay them skip when the directory is absent, except under CI
(``CI=true``), where a missing trace is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


def trace(relative: str) -> Path:
    """The path of one trace file, or skip (fail under CI) when it is missing."""
    path = TRACES / relative
    if not path.is_file():
        message = f"trace {relative} not found under {TRACES}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
