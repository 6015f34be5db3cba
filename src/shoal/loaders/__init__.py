"""Loaders built from configuration: ``module:function`` specs and SQL queries.

A loader is what a group calls on a miss. In Python code any async or sync
callable taking the key will do; this package builds loaders from strings, so a
node can be configured from a file or the command line::

    loader = load_spec("sql:postgresql://app@db/app",
                       query="SELECT body FROM pages WHERE slug = :key")
    loader = load_spec("myapp.cache:load_user")

Database drivers are imported only when a SQL loader for them is built.
"""

from __future__ import annotations

from .spec import import_loader as import_loader
from .spec import load_spec as load_spec
from .sql import DEFAULT_POOL_SIZE as DEFAULT_POOL_SIZE
from .sql import MySQLLoader as MySQLLoader
from .sql import PostgresLoader as PostgresLoader
from .sql import SQLiteLoader as SQLiteLoader
from .sql import SqlLoader as SqlLoader
from .sql import SqlLoaderStats as SqlLoaderStats
from .sql import mask_password as mask_password
from .sql import sql_loader as sql_loader
from .sql import to_bytes as to_bytes
from .sql import translate_query as translate_query

__all__ = [
    "load_spec",
    "import_loader",
    "sql_loader",
    "SqlLoader",
    "SqlLoaderStats",
    "SQLiteLoader",
    "MySQLLoader",
    "PostgresLoader",
    "DEFAULT_POOL_SIZE",
    "translate_query",
    "to_bytes",
    "mask_password",
]
