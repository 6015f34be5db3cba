"""SQL loaders honour the codec of their group: ``str`` and ``json`` groups on real databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shoal import GroupConfig, LoadError, Node, NodeConfig
from shoal.loaders import SqlLoader, load_spec

from .conftest import UNICODE_KEY, Db

MakeLoader = Callable[..., SqlLoader[Any]]


def _node() -> Node:
    return Node(NodeConfig(self_url=None, api_port=None))


async def test_str_group_gets_text(db: Db, make_loader: MakeLoader) -> None:
    """A ``str`` group with a SQL loader returns ``str``: text and numbers alike."""
    node = _node()
    try:
        text = node.add_group(
            GroupConfig(name="text", codec="str"), make_loader(db.dsn, db.query("v"))
        )
        nums = node.add_group(
            GroupConfig(name="nums", codec="str"), make_loader(db.dsn, db.query("n"))
        )
        assert await text.get("Tom") == "hello"
        assert await text.get(UNICODE_KEY) == "fish"
        assert await nums.get("Tom") == "630"
    finally:
        await node.aclose()


async def test_bytes_group_is_unchanged(db: Db, make_loader: MakeLoader) -> None:
    """The default ``bytes`` group still gets the cell's bytes, binary columns too."""
    node = _node()
    try:
        group = node.add_group(GroupConfig(name="raw"), make_loader(db.dsn, db.query("b")))
        assert await group.get("Tom") == b"\x00\xffbin"
    finally:
        await node.aclose()


async def test_json_group_gets_documents(db: Db, make_loader: MakeLoader) -> None:
    """A ``json`` group parses the cell: a text column holding JSON, or a JSON column."""
    doc = {"name": "Zoë", "tags": ["a", 1], "ok": True}
    await db.set_v("Tom", json.dumps(doc))
    await db.set_v("ghost", "{not json")
    columns = {"text": "v"}
    if db.kind == "postgres":
        columns["jsonb"] = "v::jsonb"
    elif db.kind == "mariadb":
        columns["json"] = "JSON_COMPACT(v)"
    node = _node()
    try:
        for i, (kind, column) in enumerate(columns.items()):
            group = node.add_group(
                GroupConfig(name=f"docs{i}", codec="json"), make_loader(db.dsn, db.query(column))
            )
            assert await group.get("Tom") == doc, kind
        text_loader = make_loader(db.dsn, db.query("v"))
        text = node.add_group(GroupConfig(name="bad", codec="json"), text_loader)
        with pytest.raises(LoadError, match=r"'ghost' is not valid json"):
            await text.get("ghost")
    finally:
        await node.aclose()


async def test_load_spec_loader_in_a_str_group(db: Db) -> None:
    """A loader built from a ``sql:`` spec (as ``shoal serve`` builds them) fits a ``str`` group."""
    node = _node()
    try:
        loader = load_spec(f"sql:{db.dsn}", query=db.query("v"))
        group = node.add_group(GroupConfig(name="text", codec="str"), loader)
        assert await group.get("Tom") == "hello"
    finally:
        await node.aclose()  # closes the loader too
