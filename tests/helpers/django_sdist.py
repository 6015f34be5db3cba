"""Django's own cache tests, taken from the sdist of the Django version installed.

The sdist is fetched once with ``pip download`` into a cache directory
(``$SHOAL_TEST_CACHE``, default ``~/.cache/shoal-tests``) and its ``tests/cache``
package extracted beside it; later runs, online or not, use what is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

__all__ = ["django_cache_tests"]


def _cache_dir() -> Path:
    root = os.environ.get("SHOAL_TEST_CACHE") or Path.home() / ".cache" / "shoal-tests"
    return Path(root) / "django"


def django_cache_tests() -> Path:
    """A directory holding Django's ``cache`` test package (``cache/tests.py``, ...)."""
    import django

    version = django.get_version()
    base = _cache_dir()
    tests = base / f"django-{version}-tests"
    if (tests / "cache" / "tests.py").is_file():
        return tests
    base.mkdir(parents=True, exist_ok=True)
    sdist = base / f"django-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", f"django=={version}", "--dest", str(base)],
            check=True,
        )  # fmt: skip
    prefix = f"django-{version}/tests/cache/"
    partial = tests.with_name(tests.name + ".partial")
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for member in members:
            member.name = "cache/" + member.name[len(prefix) :]
        archive.extractall(partial, members=members, filter="data")
    partial.rename(tests)
    return tests
