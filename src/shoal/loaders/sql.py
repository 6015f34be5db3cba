"""SQL loaders: one query with a ``:key`` parameter, on SQLite, MySQL/MariaDB or PostgreSQL.

A SQL loader turns a cache miss into one parameterised query. The rules are the
same for every database:

* The query names the key as ``:key`` (any number of times). It is rewritten to
  the driver's own placeholder (``?`` for sqlite3, ``%s`` for aiomysql,
  ``$1::text`` for asyncpg) by a small scanner that skips string literals,
  quoted identifiers and comments, so a ``':key'`` inside a literal is left
  alone. The key itself is always sent as a bound parameter, never spliced
  into the SQL text.
* The first column of the first row is the value: bytes-like values as they
  are, text as UTF-8, anything else (numbers, dates) as ``str(value)`` in
  UTF-8. No row, or SQL NULL, raises :class:`~shoal.errors.NotFound`.
* Those bytes are the value as the group's codec encodes it: a group given a
  SQL loader tells it its codec (:meth:`SqlLoader.bind_codec`), and the loader
  decodes the cell with it, so a ``str`` group gets ``str``, a ``json`` group
  the parsed document (a JSON or text column holding JSON), a ``bytes`` group
  the bytes. A cell the codec cannot decode is a
  :class:`~shoal.errors.LoadError` naming the key and the codec.
* Anything the driver raises (SQL errors, refused connections, timeouts while
  connecting) becomes :class:`~shoal.errors.LoadError` chained to the
  original. Messages name the database by a DSN with the password masked.
* Connections are opened lazily on the first load, by exactly one caller even
  when many misses arrive together, and are closed by :meth:`SqlLoader.aclose`
  (a :class:`~shoal.node.Node` calls it on shutdown).

The per-load time limit is the group's ``load_timeout``; loaders add none of
their own. Drivers are optional dependencies, imported when a loader is built:
a missing one raises :class:`~shoal.errors.MissingExtra` naming the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

from ..codec import BytesCodec, Codec
from ..errors import Closed, ConfigError, LoadError, MissingExtra, NotFound

__all__ = [
    "SqlLoader",
    "SqlLoaderStats",
    "SQLiteLoader",
    "MySQLLoader",
    "PostgresLoader",
    "sql_loader",
    "translate_query",
    "to_bytes",
    "mask_password",
    "DEFAULT_POOL_SIZE",
]

log = logging.getLogger("shoal.loaders")

Dialect = Literal["sqlite", "mysql", "postgres"]

DEFAULT_POOL_SIZE: Final = 10
"""Most connections (or SQLite reader threads) one loader keeps open."""

_CLOSE_TIMEOUT: Final = 10.0
# Seconds aclose() lets in-flight queries finish before connections are cut.

_NO_ROW: Final = object()
# Returned by _fetch when the query produced no row (distinct from a NULL cell).

P = TypeVar("P")


# --------------------------------------------------------------------------- query rewriting


def translate_query(query: str, dialect: Dialect) -> tuple[str, int]:
    """Rewrite the ``:key`` parameter of ``query`` into ``dialect``'s placeholder.

    Only a ``:key`` token that stands outside string literals, quoted
    identifiers and comments is replaced; ``::key`` (a PostgreSQL cast) and
    ``:keys`` (a longer name) are not parameters. For MySQL every ``%`` is
    doubled as well, because aiomysql formats the query with ``%``.

    PostgreSQL gets ``$1::text``: the key is always text, and casting it
    explicitly stops PostgreSQL from inferring another type for the parameter
    (asyncpg would then refuse a ``str``). Compare with a non-text column by
    casting further, as in ``WHERE id = :key::int``.

    Args:
        query: SQL with one or more ``:key`` parameters.
        dialect: ``"sqlite"``, ``"mysql"`` or ``"postgres"``.

    Returns:
        The driver's query text and how many placeholders it holds (sqlite3
        and aiomysql need the key once per placeholder; asyncpg reuses ``$1``).

    Raises:
        ConfigError: the query has no ``:key`` parameter, or a literal,
            quoted identifier or block comment is not closed.
    """
    placeholder = {"sqlite": "?", "mysql": "%s", "postgres": "$1::text"}[dialect]
    backslash_escapes = dialect == "mysql"
    out: list[str] = []
    count = 0
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c == "'" or (c == '"' and dialect == "mysql"):
            # A string literal. MySQL also allows backslash escapes in it; a
            # PostgreSQL E'...' string does too (checked on the prefix letter).
            escapes = backslash_escapes or (
                dialect == "postgres" and c == "'" and _is_e_prefix(query, i)
            )
            end = _skip_quoted(query, i, c, escapes=escapes)
        elif c == '"' or (c == "`" and dialect != "postgres"):
            end = _skip_quoted(query, i, c, escapes=False)  # a quoted identifier
        elif c == "[" and dialect == "sqlite":
            end = query.find("]", i + 1) + 1  # sqlite's [identifier]
            if end == 0:
                raise ConfigError(f"unterminated [identifier] in query at offset {i}")
        elif _is_line_comment(query, i, dialect):
            newline = query.find("\n", i)
            end = n if newline < 0 else newline + 1
        elif query.startswith("/*", i):
            end = _skip_block_comment(query, i, nested=dialect == "postgres")
        elif c == "$" and dialect == "postgres" and (tag := _dollar_tag(query, i)) is not None:
            close = query.find(tag, i + len(tag))
            if close < 0:
                raise ConfigError(f"unterminated dollar-quoted string {tag} in query")
            end = close + len(tag)
        elif c == ":" and _is_key_param(query, i):
            out.append(placeholder)
            count += 1
            i += len(":key")
            continue
        elif c == "%" and dialect == "mysql":
            out.append("%%")
            i += 1
            continue
        else:
            out.append(c)
            i += 1
            continue
        # Copy the skipped literal/identifier/comment verbatim (doubling % for MySQL).
        chunk = query[i:end]
        out.append(chunk.replace("%", "%%") if dialect == "mysql" else chunk)
        i = end
    if count == 0:
        raise ConfigError(
            f"the query needs a :key parameter (e.g. 'SELECT v FROM t WHERE k = :key'): {query!r}"
        )
    return "".join(out), count


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_" or c == "$"


def _is_key_param(query: str, i: int) -> bool:
    # ":key" exactly: not the second colon of a "::" cast, not the start of ":keys".
    if not query.startswith(":key", i):
        return False
    if i > 0 and query[i - 1] == ":":
        return False
    after = i + len(":key")
    return after >= len(query) or not _is_ident_char(query[after])


def _is_line_comment(query: str, i: int, dialect: Dialect) -> bool:
    if dialect == "mysql":
        # MySQL needs whitespace after "--" ("5--1" is arithmetic) and also takes "#".
        if query[i] == "#":
            return True
        return query.startswith("--", i) and (i + 2 == len(query) or query[i + 2].isspace())
    return query.startswith("--", i)


def _is_e_prefix(query: str, i: int) -> bool:
    # E'...' (escape string) in PostgreSQL: the quote follows a lone E/e.
    return i >= 1 and query[i - 1] in "eE" and (i == 1 or not _is_ident_char(query[i - 2]))


def _skip_quoted(query: str, start: int, quote: str, *, escapes: bool) -> int:
    """Return the index just past the literal opened at ``start``; a doubled quote escapes."""
    i = start + 1
    n = len(query)
    while i < n:
        c = query[i]
        if escapes and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and query[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise ConfigError(f"unterminated {quote}-quoted text in query at offset {start}")


def _skip_block_comment(query: str, start: int, *, nested: bool) -> int:
    depth = 0
    i = start
    n = len(query)
    while i < n:
        if query.startswith("/*", i) and (nested or depth == 0):
            depth += 1
            i += 2
        elif query.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ConfigError(f"unterminated /* comment */ in query at offset {start}")


def _dollar_tag(query: str, i: int) -> str | None:
    # $$ or $tag$ opens a dollar-quoted string; $1 is a positional parameter.
    if i > 0 and _is_ident_char(query[i - 1]):
        return None  # "$" inside an identifier such as a$b
    j = i + 1
    if j < len(query) and query[j].isdigit():
        return None
    while j < len(query) and (query[j].isalnum() or query[j] == "_"):
        j += 1
    if j < len(query) and query[j] == "$":
        return query[i : j + 1]
    return None


# --------------------------------------------------------------------------- results


def to_bytes(value: object, key: str) -> bytes:
    """Turn the first cell of a result into the cached bytes.

    Args:
        value: The cell, or the no-row marker used internally.
        key: The key that was loaded (for the ``NotFound`` message).

    Returns:
        Bytes-like values copied to ``bytes``; ``str`` encoded as UTF-8; any
        other value as ``str(value)`` encoded as UTF-8 (``630`` → ``b"630"``).

    Raises:
        NotFound: the query returned no row, or the cell is SQL NULL.
    """
    if value is None or value is _NO_ROW:
        raise NotFound(key)
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


# --------------------------------------------------------------------------- loaders


@dataclass(frozen=True, slots=True)
class SqlLoaderStats:
    """A snapshot of one :class:`SqlLoader`."""

    pools_opened: int
    """Connection pools created (1 after the first load; more only after a failed open)."""
    queries: int
    """Queries run, successful or not."""
    errors: int
    """Queries that failed with a driver error (``NotFound`` is not an error)."""
    closed: bool
    """True once :meth:`SqlLoader.aclose` has run."""


class SqlLoader(ABC, Generic[P]):
    """A loader that answers a key with one SQL query.

    Call it like any loader: ``await loader(key)``, the cell as bytes, or decoded
    by the codec of the group it belongs to (:meth:`bind_codec`). Build one with
    :func:`sql_loader` (or :func:`~shoal.loaders.load_spec` with a ``sql:``
    spec) rather than directly. A loader belongs to the event loop of its
    first load (its connections do); it is not meant to be shared by loops.
    """

    dialect: ClassVar[Dialect]

    def __init__(self, dsn: str, query: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        """Prepare the loader; no connection is opened until the first load.

        Args:
            dsn: The database URL (see :func:`sql_loader`).
            query: SQL with a ``:key`` parameter.
            pool_size: Most connections kept open. Default :data:`DEFAULT_POOL_SIZE`.

        Raises:
            ConfigError: a malformed DSN or query, or a bad ``pool_size``.
        """
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"pool_size must be a positive integer, got {pool_size!r}")
        self._dsn = dsn
        self._display = mask_password(dsn)
        self._query, self._placeholders = translate_query(query, self.dialect)
        self._pool_size = pool_size
        # The group's codec decodes the cell's bytes (None: a bytes group, as they are).
        self._decode: Callable[[bytes], Any] | None = None
        self._codec_name = "bytes"
        self._pool: P | None = None
        # One opener at a time: concurrent first loads must share one pool.
        self._open_lock = asyncio.Lock()
        self._closed = False
        self._pools_opened = 0
        self._queries = 0
        self._errors = 0

    @property
    def query(self) -> str:
        """The query as sent to the driver (placeholders already rewritten)."""
        return self._query

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._display}>"

    def bind_codec(self, codec: Codec[Any]) -> None:
        """Return the values of a group using ``codec``: the cell decoded by it.

        A :class:`~shoal.group.Group` calls this with its codec when it is given
        the loader; until then (and for a ``bytes`` group) loads return bytes.
        """
        if isinstance(codec, BytesCodec):
            self._decode, self._codec_name = None, "bytes"
        else:
            self._decode = codec.decode
            self._codec_name = type(codec).__name__.removesuffix("Codec").lower() or "custom"

    def statistics(self) -> SqlLoaderStats:
        """A snapshot of this loader's counters."""
        return SqlLoaderStats(
            pools_opened=self._pools_opened,
            queries=self._queries,
            errors=self._errors,
            closed=self._closed,
        )

    async def __call__(self, key: str) -> Any:
        """Load ``key``: run the query and return the first cell (see :meth:`bind_codec`).

        Raises:
            NotFound: no row, or a NULL cell.
            LoadError: the driver failed (chained to the driver's exception), or
                the group's codec cannot decode the cell.
            Closed: the loader was closed.
        """
        pool = self._pool
        if pool is None:
            pool = await self._ensure_pool()
        self._queries += 1
        try:
            value = await self._fetch(pool, key)
        except Exception as exc:
            # Drivers fail from several unrelated hierarchies (their own errors,
            # OSError from the socket, TimeoutError while connecting); to the
            # group they all mean "the database could not answer".
            self._errors += 1
            raise LoadError(f"{self._display}: {type(exc).__name__}: {exc}") from exc
        decode = self._decode
        if decode is None:
            return to_bytes(value, key)
        if type(value) is str and self._codec_name == "str":
            return value
        try:
            return decode(to_bytes(value, key))
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError, JSONDecodeError too
            raise LoadError(
                f"{self._display}: the value of {key!r} is not valid {self._codec_name} "
                f"for the group's codec: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Close the connections. Loads after this raise :class:`~shoal.errors.Closed`.

        Idempotent. In-flight queries may finish first: SQLite's always do;
        MySQL and PostgreSQL connections still busy after 10 seconds are cut.
        """
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await self._close_pool(pool)
            log.debug("%s: closed", self._display)

    async def _ensure_pool(self) -> P:
        async with self._open_lock:
            if self._closed:
                raise Closed(f"{self._display}: loader is closed")
            # Re-check under the lock: another caller may have opened it while we waited.
            if self._pool is None:
                try:
                    pool = await self._open_pool()
                except Exception as exc:
                    self._errors += 1
                    raise LoadError(
                        f"{self._display}: cannot connect: {type(exc).__name__}: {exc}"
                    ) from exc
                self._pools_opened += 1
                self._pool = pool
                log.info("%s: connected (up to %d connections)", self._display, self._pool_size)
            return self._pool

    @abstractmethod
    async def _open_pool(self) -> P:
        """Open the connection pool (called once, under the open lock)."""

    @abstractmethod
    async def _close_pool(self, pool: P) -> None:
        """Close a pool opened by :meth:`_open_pool`."""

    @abstractmethod
    async def _fetch(self, pool: P, key: str) -> object:
        """Run the query for ``key``; return the first cell or ``_NO_ROW``."""


class _SQLitePool:
    """Reader threads, each with its own read-only connection to one file.

    sqlite3 connections must not be used by two threads at once; giving every
    worker thread its own connection avoids a lock on the read path and lets
    reads run in parallel (SQLite allows many concurrent readers).
    """

    def __init__(self, uri: str, size: int) -> None:
        self._uri = uri
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="shoal-sqlite")

    def connection(self) -> sqlite3.Connection:
        """The calling worker thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() may run on another thread;
            # each connection is otherwise used by its own worker thread alone.
            conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Stop the threads (after running queries end), then close every connection."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


class SQLiteLoader(SqlLoader[_SQLitePool]):
    """A SQL loader over a SQLite file, read-only, queried on worker threads.

    DSN: ``sqlite://`` followed by the file's path, so ``sqlite:///var/db/x.db``
    is the absolute path ``/var/db/x.db`` and ``sqlite://data/x.db`` is relative
    to the working directory. The path is percent-decoded. The file must exist.
    """

    dialect = "sqlite"

    def __init__(self, dsn: str, query: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(dsn, query, pool_size=pool_size)
        self.path = _sqlite_path(dsn)

    async def _open_pool(self) -> _SQLitePool:
        uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
        pool = _SQLitePool(uri, self._pool_size)
        # Open one connection now so a missing or unreadable file fails the
        # first load with a clear error instead of each worker failing alone.
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool.executor, _probe_sqlite, pool)
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
        return pool

    async def _close_pool(self, pool: _SQLitePool) -> None:
        await asyncio.to_thread(pool.close)

    async def _fetch(self, pool: _SQLitePool, key: str) -> object:
        loop = asyncio.get_running_loop()
        params = (key,) * self._placeholders
        return await loop.run_in_executor(pool.executor, _sqlite_fetch, pool, self._query, params)


def _probe_sqlite(pool: _SQLitePool) -> None:
    # Reading the schema makes SQLite check that the file is a database.
    pool.connection().execute("SELECT count(*) FROM sqlite_master").fetchone()


def _sqlite_fetch(pool: _SQLitePool, query: str, params: tuple[str, ...]) -> object:
    cursor = pool.connection().execute(query, params)
    try:
        row = cursor.fetchone()
    finally:
        cursor.close()
    return _NO_ROW if row is None else row[0]


class MySQLLoader(SqlLoader[Any]):
    """A SQL loader over MySQL or MariaDB, through an aiomysql pool (extra ``shoal[mysql]``).

    DSN: ``mysql://user:password@host:port/database`` (``mariadb://`` is the
    same). Defaults: host ``localhost``, port 3306, no password. Query
    parameters: ``charset`` (default ``utf8mb4``) and ``unix_socket``.
    """

    dialect = "mysql"

    def __init__(self, dsn: str, query: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(dsn, query, pool_size=pool_size)
        try:
            import aiomysql
        except ImportError as exc:
            raise MissingExtra("aiomysql", "mysql") from exc
        self._aiomysql = aiomysql
        self._connect_args = _mysql_connect_args(dsn)

    async def _open_pool(self) -> Any:
        return await self._aiomysql.create_pool(
            minsize=1,
            maxsize=self._pool_size,
            # Autocommit: a pooled connection would otherwise sit in one
            # REPEATABLE READ transaction and keep answering from its first
            # snapshot, never seeing rows changed after it.
            autocommit=True,
            # Drop connections older than an hour before the server's
            # wait_timeout silently closes them.
            pool_recycle=3600,
            **self._connect_args,
        )

    async def _close_pool(self, pool: Any) -> None:
        pool.close()
        try:
            await asyncio.wait_for(pool.wait_closed(), _CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()
            await pool.wait_closed()

    async def _fetch(self, pool: Any, key: str) -> object:
        conn = await pool.acquire()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(self._query, (key,) * self._placeholders)
                row = await cursor.fetchone()
        except self._aiomysql.Error:
            # The server's error packet was read in full (or aiomysql already
            # closed a broken connection): the connection is still in step.
            raise
        except BaseException:
            # Any other way out mid-query (cancelled by the group's
            # load_timeout, a decoding failure) may leave unread packets on
            # the connection, which the next query would read as its own
            # answer. aiomysql closes the connection on some of these paths;
            # closing here covers them all.
            conn.close()
            raise
        finally:
            await pool.release(conn)
        return _NO_ROW if row is None else row[0]


class PostgresLoader(SqlLoader[Any]):
    """A SQL loader over PostgreSQL, through an asyncpg pool (extra ``shoal[postgres]``).

    DSN: ``postgresql://user:password@host:port/database?option=value`` (or
    ``postgres://``), passed to asyncpg as it is, so every libpq-style option
    asyncpg understands (``sslmode``, ...) works. The key is bound as text:
    compare with a non-text column by casting, ``WHERE id = :key::int``.
    """

    dialect = "postgres"

    def __init__(self, dsn: str, query: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(dsn, query, pool_size=pool_size)
        try:
            import asyncpg
        except ImportError as exc:
            raise MissingExtra("asyncpg", "postgres") from exc
        self._asyncpg = asyncpg

    async def _open_pool(self) -> Any:
        return await self._asyncpg.create_pool(dsn=self._dsn, min_size=1, max_size=self._pool_size)

    async def _close_pool(self, pool: Any) -> None:
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def _fetch(self, pool: Any, key: str) -> object:
        row = await pool.fetchrow(self._query, key)
        return _NO_ROW if row is None else row[0]


_SCHEMES: Final[dict[str, type[SqlLoader[Any]]]] = {
    "sqlite": SQLiteLoader,
    "mysql": MySQLLoader,
    "mariadb": MySQLLoader,
    "postgresql": PostgresLoader,
    "postgres": PostgresLoader,
}


def sql_loader(dsn: str, query: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> SqlLoader[Any]:
    """Build the SQL loader for ``dsn``.

    Args:
        dsn: ``sqlite:///path/to/file.db``, ``mysql://user:pass@host:port/db``
            (or ``mariadb://``), or ``postgresql://user:pass@host:port/db``
            (or ``postgres://``).
        query: SQL whose first column of the first row is the value, with a
            ``:key`` parameter, e.g. ``SELECT score FROM scores WHERE name = :key``.
        pool_size: Most connections the loader keeps open. Default 10.

    Returns:
        A loader to pass to a group; close it with ``await loader.aclose()``
        (a node does this on shutdown).

    Raises:
        ConfigError: an unknown scheme, a malformed DSN, or a query without ``:key``.
        MissingExtra: the database's driver is not installed.
    """
    scheme, sep, _ = dsn.partition("://")
    cls = _SCHEMES.get(scheme.lower()) if sep else None
    if cls is None:
        raise ConfigError(
            f"unsupported database URL {mask_password(dsn)!r}; use sqlite:///path, "
            "mysql://, mariadb://, postgresql:// or postgres://"
        )
    return cls(dsn, query, pool_size=pool_size)


# --------------------------------------------------------------------------- DSN parsing


def mask_password(dsn: str) -> str:
    """Return ``dsn`` with its password replaced by ``***``, for messages and logs."""
    with contextlib.suppress(ValueError):
        parts = urllib.parse.urlsplit(dsn)
        if parts.password is not None:
            userinfo, _, hostinfo = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    return dsn


def _sqlite_path(dsn: str) -> str:
    path = urllib.parse.unquote(dsn.partition("://")[2].partition("?")[0])
    if not path:
        raise ConfigError(f"sqlite URL needs a file path, e.g. sqlite:///var/db/x.db: {dsn!r}")
    if path == ":memory:":
        # Each connection would get its own empty database: nothing to load from.
        raise ConfigError("sqlite ':memory:' databases cannot be shared by loader threads")
    return path


def _mysql_connect_args(dsn: str) -> dict[str, Any]:
    try:
        parts = urllib.parse.urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed MySQL URL {mask_password(dsn)!r}: {exc}") from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(
            f"MySQL URL needs a database, e.g. mysql://user@host:3306/db: {mask_password(dsn)!r}"
        )
    args: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": port or 3306,
        "user": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else "",
        "db": database,
        "charset": "utf8mb4",
    }
    for name, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
        if name not in ("charset", "unix_socket"):
            raise ConfigError(f"unknown MySQL URL option {name!r}; supported: charset, unix_socket")
        args[name] = values[-1]
    return args
