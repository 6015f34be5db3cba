"""Rewriting ``:key`` into each driver's placeholder, and turning cells into bytes."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import pytest

from shoal.errors import ConfigError, NotFound
from shoal.loaders import sql_loader, to_bytes, translate_query

# (query, dialect, rewritten query, number of placeholders)
TRANSLATIONS: list[tuple[str, Any, str, int]] = [
    ("SELECT v FROM t WHERE k = :key", "sqlite", "SELECT v FROM t WHERE k = ?", 1),
    ("SELECT v FROM t WHERE k = :key", "mysql", "SELECT v FROM t WHERE k = %s", 1),
    ("SELECT v FROM t WHERE k = :key", "postgres", "SELECT v FROM t WHERE k = $1::text", 1),
    # At the very end and the very start of the text.
    (":key", "sqlite", "?", 1),
    ("WHERE k=:key;", "mysql", "WHERE k=%s;", 1),
    # Several occurrences: positional drivers need one argument per placeholder.
    ("k = :key OR j = :key", "sqlite", "k = ? OR j = ?", 2),
    ("k = :key OR j = :key", "postgres", "k = $1::text OR j = $1::text", 2),
    # Longer names and casts are not the parameter.
    ("k = :key AND j = :keys AND x = :key_2", "sqlite", "k = ? AND j = :keys AND x = :key_2", 1),
    ("k = :key::int AND j = x::key", "postgres", "k = $1::text::int AND j = x::key", 1),
    # String literals are left alone; a doubled quote does not end them.
    ("k = ':key' OR k = :key", "sqlite", "k = ':key' OR k = ?", 1),
    ("k = 'it''s :key' OR k = :key", "postgres", "k = 'it''s :key' OR k = $1::text", 1),
    # MySQL: backslash escapes and double-quoted strings; % doubled everywhere.
    (r"k = 'a\' :key' OR k = :key", "mysql", r"k = 'a\' :key' OR k = %s", 1),
    ('k = ":key" OR k = :key', "mysql", 'k = ":key" OR k = %s', 1),
    ("v LIKE 'a%' AND k = :key", "mysql", "v LIKE 'a%%' AND k = %s", 1),
    ("k = :key AND v % 2 = 0", "mysql", "k = %s AND v %% 2 = 0", 1),
    # ...but % is plain text for the other drivers.
    ("v LIKE 'a%' AND k = :key", "postgres", "v LIKE 'a%' AND k = $1::text", 1),
    # Quoted identifiers.
    ('":key" WHERE k = :key', "postgres", '":key" WHERE k = $1::text', 1),
    ("SELECT `:key` FROM t WHERE k = :key", "mysql", "SELECT `:key` FROM t WHERE k = %s", 1),
    ("SELECT [:key] FROM t WHERE k = :key", "sqlite", "SELECT [:key] FROM t WHERE k = ?", 1),
    # Comments.
    ("k = :key -- or :key\n", "sqlite", "k = ? -- or :key\n", 1),
    ("k = :key /* :key */", "postgres", "k = $1::text /* :key */", 1),
    ("k = :key /* a /* :key */ b */", "postgres", "k = $1::text /* a /* :key */ b */", 1),
    ("k = :key # :key", "mysql", "k = %s # :key", 1),
    # MySQL needs a space after "--"; "5--1" is arithmetic.
    ("SELECT 5--1 WHERE k = :key", "mysql", "SELECT 5--1 WHERE k = %s", 1),
    # PostgreSQL dollar quoting and E'' strings.
    ("SELECT $$ :key $$ WHERE k = :key", "postgres", "SELECT $$ :key $$ WHERE k = $1::text", 1),
    ("SELECT $t$ :key $t$, :key", "postgres", "SELECT $t$ :key $t$, $1::text", 1),
    (r"SELECT E'\' :key', :key", "postgres", r"SELECT E'\' :key', $1::text", 1),
    # A standard PostgreSQL string ends at the quote even after a backslash.
    ("SELECT '\\', :key", "postgres", "SELECT '\\', $1::text", 1),
]


@pytest.mark.parametrize(("query", "dialect", "expected", "count"), TRANSLATIONS)
def test_translate_query(query: str, dialect: Any, expected: str, count: int) -> None:
    """Only the :key token outside literals, identifiers and comments is rewritten."""
    assert translate_query(query, dialect) == (expected, count)


@pytest.mark.parametrize(
    ("query", "dialect", "message"),
    [
        ("SELECT v FROM t", "sqlite", "needs a :key parameter"),
        ("SELECT v FROM t WHERE k = ':key'", "postgres", "needs a :key parameter"),
        ("SELECT v FROM t WHERE k = :keys", "mysql", "needs a :key parameter"),
        ("SELECT 'open WHERE k = :key", "sqlite", "unterminated '-quoted"),
        ('SELECT "open WHERE k = :key', "postgres", 'unterminated "-quoted'),
        ("SELECT v /* open WHERE k = :key", "mysql", "unterminated /* comment"),
        ("SELECT $x$ open WHERE k = :key", "postgres", "unterminated dollar-quoted"),
        ("SELECT [open WHERE k = :key", "sqlite", "unterminated [identifier]"),
    ],
)
def test_translate_query_rejects(query: str, dialect: Any, message: str) -> None:
    """A query without a usable :key, or with an unclosed literal, is a ConfigError."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        translate_query(query, dialect)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (b"\x00raw", b"\x00raw"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        ("héllo", "héllo".encode()),
        (630, b"630"),
        (-1.5, b"-1.5"),
        (Decimal("589.00"), b"589.00"),
        (datetime.date(2024, 2, 29), b"2024-02-29"),
        ("", b""),
        (0, b"0"),
    ],
)
def test_to_bytes(cell: object, expected: bytes) -> None:
    """Bytes-like cells stay bytes, text is UTF-8, anything else is str() in UTF-8."""
    result = to_bytes(cell, "k")
    assert result == expected
    assert type(result) is bytes


def test_to_bytes_null_is_not_found() -> None:
    """SQL NULL means the key does not exist."""
    with pytest.raises(NotFound) as info:
        to_bytes(None, "Tom")
    assert info.value.key == "Tom"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("oracle://scott:tiger@db/x", "unsupported database URL"),
        ("/var/db/x.db", "unsupported database URL"),
        ("sqlite://", "needs a file path"),
        ("sqlite://:memory:", "cannot be shared"),
        ("mysql://root@127.0.0.1:3306", "needs a database"),
        ("mysql://root@127.0.0.1:99999/test", "malformed MySQL URL"),
        ("mysql://root@127.0.0.1/test?ssl=1", "unknown MySQL URL option"),
    ],
)
def test_bad_dsn_is_a_config_error(dsn: str, message: str) -> None:
    """Malformed database URLs fail when the loader is built, not at the first load."""
    with pytest.raises(ConfigError, match=message):
        sql_loader(dsn, "SELECT v FROM t WHERE k = :key")


def test_config_error_never_shows_the_password() -> None:
    """Even a rejected URL is echoed with its password masked."""
    with pytest.raises(ConfigError) as info:
        sql_loader("oracle://scott:tiger@db/x", "SELECT v FROM t WHERE k = :key")
    assert "tiger" not in str(info.value)
    assert "scott:***@db" in str(info.value)


def test_bad_pool_size() -> None:
    """The pool size must be a positive integer."""
    with pytest.raises(ConfigError, match="pool_size"):
        sql_loader("sqlite:///x.db", "SELECT v FROM t WHERE k = :key", pool_size=0)
