"""``import shoal`` loads what a node needs, not the clients' machinery or package metadata."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("shoal.client", "shoal.sync_client", "urllib.request", "http.client", "importlib.metadata")

SCRIPT = f"""
import json, sys
import shoal
before = [m for m in {HEAVY!r} if m in sys.modules]
client, sync_client = shoal.Client, shoal.SyncClient
print(json.dumps([before, client.__module__, sync_client.__module__, shoal.__version__]))
"""


def test_import_shoal_leaves_the_clients_until_first_use() -> None:
    """The clients (and their urllib/http.client) load on first access to ``shoal.Client``."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    before, client_module, sync_module, version = json.loads(done.stdout)
    assert before == []
    assert (client_module, sync_module) == ("shoal.client", "shoal.sync_client")
    assert version.count(".") == 2


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    """The lazy names do not swallow typos."""
    import pytest

    import shoal

    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        _ = shoal.Clinet
