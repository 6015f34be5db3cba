"""shoal's optional C extension, :mod:`shoal._speedups`, when it is built and wanted.

The extension holds compiled versions of two hot paths (the multi-probe ring
lookup and the HTTP server's recognizer of simple GETs). shoal gives the same
answers without it: a wheel built without a C compiler leaves it out, and
``SHOAL_NO_SPEEDUPS`` set to anything but empty, ``0``, ``false`` or ``no``
turns it off at run time (each user reads it once, when it is imported).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["load_speedups", "speedups_turned_off"]


def speedups_turned_off() -> bool:
    """Whether ``SHOAL_NO_SPEEDUPS`` asks for the pure-Python paths."""
    return os.environ.get("SHOAL_NO_SPEEDUPS", "").strip().lower() not in ("", "0", "false", "no")


def load_speedups() -> ModuleType | None:
    """The compiled module, or None (not built, or turned off by ``SHOAL_NO_SPEEDUPS``)."""
    if speedups_turned_off():
        return None
    try:
        return importlib.import_module("shoal._speedups")
    except ImportError:  # installed without a C compiler
        return None
