"""A SyncNode and os.fork(): a node started before the fork refuses in the child with
a clear error (its loop thread is the parent's), never hangs; the parent goes on; a
node made but not started before the fork starts in the child."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from shoal import NodeConfig, ShoalError
from shoal.sync import SyncNode


def _load(key: str) -> bytes:
    return f"v:{key}".encode()


def in_child(body: Callable[[], bytes]) -> bytes:
    """Run ``body`` in a forked child; return what it returned (or its error's text)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                answer = body()
            except BaseException as exc:
                answer = f"{type(exc).__name__}: {exc}".encode()
            os.write(write, answer)
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


@pytest.mark.timeout(30)
def test_a_node_started_before_the_fork_refuses_in_the_child() -> None:
    with SyncNode(NodeConfig()) as node:
        group = node.group("g", _load)
        assert group.get("hit") == b"v:hit"

        def child() -> bytes:
            refusals = []
            for call in (
                lambda: group.get("hit"),  # a hit: stale copy of the parent's memory
                lambda: group.get("miss"),
                lambda: group.set("k", b"v"),
                lambda: group.delete("k"),
                lambda: node.get_group("g"),
                lambda: node.group("h", _load),
                node.start,
            ):
                try:
                    call()
                except ShoalError as exc:
                    refusals.append("start the node after the fork" in str(exc).lower())
                else:
                    refusals.append(False)
            node.close()  # returns at once, touches nothing of the parent's
            return b"ok" if all(refusals) and len(refusals) == 7 else repr(refusals).encode()

        assert in_child(child) == b"ok"
        assert group.get("miss") == b"v:miss"  # the parent's node is unharmed
        group.set("k", b"parent")
        assert group.get("k") == b"parent"


@pytest.mark.timeout(30)
def test_a_node_not_yet_started_starts_in_the_child() -> None:
    node = SyncNode(NodeConfig())

    def child() -> bytes:
        with node:
            value: bytes = node.group("g", _load).get("x")
            return value

    assert in_child(child) == b"v:x"
