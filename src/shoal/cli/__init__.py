"""The ``shoal`` command line: ``serve`` runs a node; ``get``, ``set``, ``del``, ``stats`` use one.

The commands live in :mod:`shoal.cli.main` (entry point ``shoal.cli.main:main``),
with their flags and the ``SHOAL_*`` environment variables they read;
``cluster`` (a supervised local cluster) in :mod:`shoal.cli.cluster`, ``demo``
(the scripted tour) in :mod:`shoal.cli.demo`, and the cluster log lines in
:mod:`shoal.cli.tracing`. This package re-exports nothing, so ``shoal.cli.main``
always names that module.
"""

from __future__ import annotations

__all__: list[str] = []
