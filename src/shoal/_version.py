"""The version of shoal: the one place it is written (the build reads it from here).

A constant rather than a lookup in the installed metadata, which would cost an
import of ``importlib.metadata`` (about 40 ms) on every ``import shoal``.
"""

__version__ = "0.1.0"
