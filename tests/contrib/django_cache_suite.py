"""Run Django's ``BaseCacheTests`` (from Django's own test suite) against ShoalCache.

Run as a script by ``test_django_cache.py``, in a process of its own (Django's
settings are process-wide)::

    python django_cache_suite.py TESTS_DIR LOCATION RESULT.json [near]

``TESTS_DIR`` holds Django's ``cache`` test package, ``LOCATION`` the nodes' HTTP
API URLs (comma-separated); ``near`` turns the backend's near cache on. The
summary (tests run, skipped with their reasons, failures and errors with their
tracebacks) is written to ``RESULT.json``.
"""

from __future__ import annotations

import json
import sys
import unittest
from typing import Any

# What cannot apply to a distributed cache, by test name, and why.
SKIPPED: dict[str, str] = {
    "test_cull": (
        "culling internals: MAX_ENTRIES/CULL_FREQUENCY are options of Django's local "
        "backends; a shoal group evicts by its own policy within its byte budget"
    ),
    "test_zero_cull": "culling internals (CULL_FREQUENCY=0), as test_cull",
    "test_cull_delete_when_store_empty": "culling internals (_max_entries), as test_cull",
}


def expected_skips() -> dict[str, str]:
    """The tests skipped by name, with their reasons."""
    return SKIPPED


def main(tests_dir: str, location: str, result_path: str, near: str = "") -> int:
    sys.path.insert(0, tests_dir)
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        SECRET_KEY="django-cache-suite",
        USE_TZ=False,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        MIDDLEWARE=[],
        ROOT_URLCONF=[],
        CACHES={"default": {"BACKEND": "shoal.contrib.django.ShoalCache", "LOCATION": location}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    )
    django.setup()

    from cache.tests import (  # type: ignore[import-not-found]  # Django's own
        BaseCacheTests,
        caches_setting_for_tests,
    )
    from django.test import TestCase, override_settings
    from django.test.utils import get_runner

    params: dict[str, Any] = {"BACKEND": "shoal.contrib.django.ShoalCache", "LOCATION": location}
    if near == "near":
        params["OPTIONS"] = {"near_cache": True}

    @override_settings(CACHES=caches_setting_for_tests(base=params, exclude={"cull", "zero_cull"}))
    class ShoalCacheTests(BaseCacheTests, TestCase):  # type: ignore[misc]
        """Django's common cache tests on a live shoal cluster."""

    for name, reason in expected_skips().items():
        setattr(ShoalCacheTests, name, unittest.skip(reason)(getattr(BaseCacheTests, name)))

    runner = get_runner(settings)(verbosity=0, interactive=False)
    old_config = runner.setup_databases()
    try:
        suite = unittest.TestLoader().loadTestsFromTestCase(ShoalCacheTests)
        result = unittest.TextTestRunner(verbosity=0, stream=sys.stderr).run(suite)
    finally:
        runner.teardown_databases(old_config)
    summary: dict[str, Any] = {
        "run": result.testsRun,
        "skipped": {test.id().rsplit(".", 1)[1]: reason for test, reason in result.skipped},
        "failures": [f"{test.id()}\n{trace}" for test, trace in result.failures],
        "errors": [f"{test.id()}\n{trace}" for test, trace in result.errors],
    }
    with open(result_path, "w") as out:
        json.dump(summary, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
