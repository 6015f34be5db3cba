"""Loader specs: ``module:function`` imports and ``sql:DSN`` loaders."""

from __future__ import annotations

import json
import os.path
import sys
import textwrap
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import ConfigError, MissingExtra
from shoal.loaders import MySQLLoader, PostgresLoader, SQLiteLoader, SqlLoader, load_spec

QUERY = "SELECT v FROM t WHERE k = :key"


@pytest.fixture
def loader_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real importable package with loaders in it; returns its name."""
    name = f"shoal_spec_test_{os.getpid()}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "loaders.py").write_text(
        textwrap.dedent(
            """
            from shoal.errors import NotFound

            SCORES = {"Tom": b"630"}

            async def load(key: str) -> bytes:
                try:
                    return SCORES[key]
                except KeyError:
                    raise NotFound(key) from None

            def load_sync(key: str) -> bytes:
                return key.upper().encode()

            class Holder:
                @staticmethod
                def load(key: str) -> bytes:
                    return b"held:" + key.encode()

            NOT_CALLABLE = 42
            """
        )
    )
    (package / "broken.py").write_text("import shoal_no_such_dependency_xyz\n")
    (package / "crashing.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


async def test_module_function_async(loader_module: str) -> None:
    """``package.module:function`` imports the module and returns the function."""
    load: Any = load_spec(f"{loader_module}.loaders:load")
    assert await load("Tom") == b"630"


def test_module_function_sync_and_nested_attribute(loader_module: str) -> None:
    """Sync functions work, and the attribute may be a dotted path."""
    assert load_spec(f"{loader_module}.loaders:load_sync")("ab") == b"AB"
    assert load_spec(f"{loader_module}.loaders:Holder.load")("x") == b"held:x"


def test_stdlib_callables() -> None:
    """Any importable callable is accepted, including from dotted stdlib modules."""
    assert load_spec("json:dumps") is json.dumps
    assert load_spec("os.path:join") is os.path.join
    assert load_spec("collections:OrderedDict.fromkeys") == OrderedDict.fromkeys


def test_spec_is_stripped() -> None:
    """Whitespace around a spec (as from a config file) is ignored."""
    assert load_spec("  json:dumps\n") is json.dumps


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("json", "must be 'module:function' or 'sql:DSN'"),
        ("json:", "must be 'module:function' or 'sql:DSN'"),
        (":dumps", "must be 'module:function' or 'sql:DSN'"),
        ("http://example.com/{key}", "must be 'module:function' or 'sql:DSN'"),
        ("json:dumps:x", "must be 'module:function' or 'sql:DSN'"),
        ("shoal_no_such_module_xyz:load", "no module named 'shoal_no_such_module_xyz'"),
        ("json.nope:load", "no module named 'json.nope'"),
        ("json:nope", "'json' has no attribute 'nope'"),
        ("collections:OrderedDict.nope", "'collections:OrderedDict' has no attribute 'nope'"),
        ("math:pi", "is not callable"),
    ],
)
def test_bad_module_specs(spec: str, message: str) -> None:
    """Every way a module spec can be wrong is a ConfigError that says which."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_spec(spec)


def test_import_errors_inside_the_module(loader_module: str) -> None:
    """A module that fails to import names the inner problem, chained to it."""
    with pytest.raises(ConfigError, match="shoal_no_such_dependency_xyz") as info:
        load_spec(f"{loader_module}.broken:load")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(ConfigError, match="RuntimeError: boom at import") as info:
        load_spec(f"{loader_module}.crashing:load")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_not_callable_attribute(loader_module: str) -> None:
    """A spec naming data rather than a function is rejected."""
    with pytest.raises(ConfigError, match="not callable"):
        load_spec(f"{loader_module}.loaders:NOT_CALLABLE")


def test_query_only_for_sql() -> None:
    """A query given with a module spec is a mistake worth reporting."""
    with pytest.raises(ConfigError, match="only applies to sql"):
        load_spec("json:dumps", query=QUERY)


@pytest.mark.parametrize("query", [None, "", "  "])
def test_sql_needs_a_query(query: str | None) -> None:
    """A sql: spec without a query cannot load anything."""
    with pytest.raises(ConfigError, match="needs a query"):
        load_spec("sql:sqlite:///x.db", query=query)


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("sql:sqlite:///var/db/x.db", SQLiteLoader),
        ("sql:mysql://root@127.0.0.1:3306/test", MySQLLoader),
        ("sql:mariadb://root:pw@127.0.0.1/test", MySQLLoader),
        ("sql:postgresql://postgres@127.0.0.1:5432/test", PostgresLoader),
        ("sql:postgres://postgres@127.0.0.1/test", PostgresLoader),
    ],
)
async def test_sql_specs_pick_the_driver(spec: str, cls: type[SqlLoader[Any]]) -> None:
    """The DSN's scheme picks the loader class; nothing connects yet."""
    loader: Any = load_spec(spec, query=QUERY)
    assert isinstance(loader, cls)
    assert loader.statistics().pools_opened == 0
    await loader.aclose()


def test_sql_spec_without_key_parameter() -> None:
    """The query must name the key."""
    with pytest.raises(ConfigError, match=":key"):
        load_spec("sql:sqlite:///x.db", query="SELECT v FROM t")


@pytest.mark.parametrize(
    ("spec", "module", "extra"),
    [
        ("sql:mysql://root@127.0.0.1/test", "aiomysql", "mysql"),
        ("sql:mariadb://root@127.0.0.1/test", "aiomysql", "mysql"),
        ("sql:postgresql://postgres@127.0.0.1/test", "asyncpg", "postgres"),
    ],
)
def test_missing_driver_names_the_extra(
    spec: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the driver, building the loader says which extra to install."""
    # A None entry in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra) as info:
        load_spec(spec, query=QUERY)
    assert info.value.extra == extra
    assert f"shoal[{extra}]" in str(info.value)
    assert isinstance(info.value, ImportError)
