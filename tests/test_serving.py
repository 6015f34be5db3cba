"""The served-group contract: what a server may call on a group is one verb set.

Every method of :class:`shoal.serving.ServedGroup` is a ``serve_`` verb or a name of
the group's own user API (which a server calls as any user would), and the servers
call nothing else on a group.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from shoal import Group
from shoal.serving import ServedGroup

SRC = Path(__file__).resolve().parent.parent / "src" / "shoal"
SERVERS = ["api/http.py", "transport/http_server.py", "transport/grpc_server.py"]
# The user API and the group's identity, shared with servers as they are.
USER_API = {
    "name",
    "config",
    "validate_key",
    "statistics",
    "get_many_bytes",
    "set_bytes",
    "delete",
    "remove_keys",
    "invalidate_group",
    "add_bytes",
    "incr",
    "touch",
    "ttl",
    "set_many_bytes",
}


def _protocol_members() -> set[str]:
    return {
        name
        for name, _ in inspect.getmembers(ServedGroup)
        if not name.startswith("_") and name in ServedGroup.__dict__
    }


def test_every_served_method_is_a_serve_verb_or_the_user_api() -> None:
    members = _protocol_members()
    assert members >= {"serve_cached", "serve_peer_nowait", "serve_count"}
    assert {m for m in members if not m.startswith("serve_")} == USER_API
    missing = [m for m in members if not hasattr(Group, m) and m not in {"name", "config"}]
    assert missing == []


def test_servers_call_only_the_protocol_on_a_group() -> None:
    """Every method of Group that a server calls on a ``group`` is a ServedGroup method."""
    members = _protocol_members()
    called: set[str] = set()
    for path in SERVERS:
        tree = ast.parse((SRC / path).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "group"
                and hasattr(Group, func.attr)  # not a method of a str named group
            ):
                called.add(func.attr)
    assert {"serve_cached", "serve_peer_nowait", "serve_peer_set"} <= called
    assert called <= members, called - members
