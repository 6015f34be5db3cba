"""Keys and peer texts are logged escaped: one request cannot forge log lines."""

from __future__ import annotations

import logging

import pytest

from helpers.peer_nodes import FakePeer, Received, Reply, answer, serving
from shoal import NotFound, PeerUnavailable
from shoal._printable import printable
from shoal.cli.slowdb import SlowDB

FORGED = "k\nshoal.group WARNING forged\r\x1b[2J\u2028"


def test_printable_keeps_plain_text_and_escapes_the_rest() -> None:
    assert printable("Tom") == "Tom"
    assert printable("Sam Hill/42é") == "Sam Hill/42é"
    assert printable("a\nb") == "a\\nb"
    assert printable("a\\nb") == "a\\\\nb"  # a real backslash cannot pass for an escape
    escaped = printable(FORGED)
    assert escaped.isprintable()
    for control in "\n\r\x1b\u2028":
        assert control not in escaped


def no_forged_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [record.getMessage() for record in caplog.records]
    assert messages
    for message in messages:
        assert message.isprintable(), message
    return messages


async def test_the_demo_database_logs_the_key_escaped(caplog: pytest.LogCaptureFixture) -> None:
    db = SlowDB(delay=0)
    try:
        with caplog.at_level(logging.INFO, logger="shoal.demo"):
            with pytest.raises(NotFound):
                await db(FORGED)
            assert await db("Tom")
        messages = no_forged_lines(caplog)
        assert "[SlowDB] search key Tom" in messages
        assert any("\\n" in m for m in messages)
    finally:
        await db.aclose()


async def test_a_peer_failure_is_logged_with_the_key_and_the_peers_text_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer whose error text holds line breaks, for a key that holds some too."""

    async def script(request: Received) -> Reply:
        return Reply(answer(502, FORGED.encode() + b"\n"))

    async with FakePeer(script) as peer, serving() as me:
        me.node.set_peers([me.url, peer.url])
        picker = me.node.peers
        assert picker is not None
        key = next(f"{FORGED}{i}" for i in range(100) if picker.owner(f"{FORGED}{i}") == peer.url)
        plain = me.node.group("plain")  # nothing to load here: the error reaches the caller
        with (
            caplog.at_level(logging.WARNING, logger="shoal.group"),
            pytest.raises(PeerUnavailable),
        ):
            await plain.get(key)
        (message,) = no_forged_lines(caplog)
        assert "forged" in message
