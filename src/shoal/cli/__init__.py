"""The ``shoal`` command line: ``serve`` runs a node; ``get``, ``set``, ``del``, ``stats`` use one.

One module per command family: :mod:`shoal.cli.main` holds the argument parser and
the dispatch (entry point ``shoal.cli.main:main``, imported by nothing else);
``serve`` lives in :mod:`shoal.cli.serve` with its settings (flags, ``SHOAL_*``
variables, the TOML file) in :mod:`shoal.cli.plan` and
:mod:`shoal.cli.membership_flags`; the client commands in
:mod:`shoal.cli.client_commands`; ``cluster`` (a supervised local cluster) in
:mod:`shoal.cli.cluster`, ``demo`` (the scripted tour) in :mod:`shoal.cli.demo`,
``bench hitratio`` in :mod:`shoal.cli.hitratio`, the cluster log lines in
:mod:`shoal.cli.tracing`. They share :mod:`shoal.cli.common` (exit codes, errors,
logging), :mod:`shoal.cli.parse` (value parsers) and :mod:`shoal.cli.http_client`
(the one HTTP client). This package re-exports nothing, so ``shoal.cli.main``
always names that module.
"""

from __future__ import annotations

__all__: list[str] = []
