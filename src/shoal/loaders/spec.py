"""Loader specs: the strings that name a loader in a config file or on the command line.

Two forms are understood:

``module:function``
    Import ``module`` (a dotted path) and take ``function`` from it (a dotted
    attribute path, so ``pkg.mod:Class.method`` works). The result may be an
    async or a sync callable taking the key.

``sql:DSN``
    A :mod:`shoal.loaders.sql` loader for the database at ``DSN``; the query
    (with a ``:key`` parameter) is given separately.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Final, cast

from ..errors import ConfigError
from ..group import Loader
from .sql import sql_loader

__all__ = ["load_spec", "import_loader"]

_DOTTED: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def load_spec(spec: str, *, query: str | None = None) -> Loader[Any]:
    """Build the loader a spec names.

    Args:
        spec: ``module:function`` or ``sql:DSN`` (see the module docstring).
        query: For ``sql:`` specs, the SQL with a ``:key`` parameter whose
            first column of the first row is the value. Not allowed otherwise.

    Returns:
        The loader: the imported callable, or a
        :class:`~shoal.loaders.sql.SqlLoader` (which must be closed with
        ``aclose()``; a node does this on shutdown).

    Raises:
        ConfigError: a malformed spec, a module or attribute that cannot be
            found, a missing or misplaced query.
        MissingExtra: a ``sql:`` spec whose database driver is not installed.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("a loader spec must be a non-empty string")
    spec = spec.strip()
    if spec.startswith("sql:"):
        if query is None or not query.strip():
            raise ConfigError(
                f"loader {spec!r} needs a query with a :key parameter, "
                "e.g. 'SELECT value FROM items WHERE id = :key'"
            )
        return sql_loader(spec.removeprefix("sql:"), query)
    if query is not None:
        raise ConfigError(f"a query only applies to sql: loaders, not to {spec!r}")
    return import_loader(spec)


def import_loader(spec: str) -> Loader[Any]:
    """Import the callable named by ``module:attribute``.

    Raises:
        ConfigError: a malformed spec, a module that cannot be imported (the
            import error is chained), a missing attribute, or an attribute
            that is not callable.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not _DOTTED.match(module_name) or not _DOTTED.match(attr_path):
        raise ConfigError(f"loader spec must be 'module:function' or 'sql:DSN', got {spec!r}")
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Tell "your module does not exist" apart from "your module imports
        # something that does not exist": only the second shows the inner name.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(f"loader {spec!r}: no module named {module_name!r}") from exc
        raise ConfigError(f"loader {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        # Importing runs the module's code; whatever it raises is a bad config.
        raise ConfigError(
            f"loader {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    walked = module_name
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"loader {spec!r}: {walked!r} has no attribute {part!r}") from None
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if not callable(target):
        raise ConfigError(f"loader {spec!r} is not callable (it is a {type(target).__name__})")
    return cast("Loader[Any]", target)
