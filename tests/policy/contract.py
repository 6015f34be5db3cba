"""The contract every eviction policy meets, run against each one."""

from __future__ import annotations

from typing import ClassVar

import pytest

from shoal.policy import Policy


class PolicyContract:
    """Mix into a test class and set ``make`` to a factory of empty policies."""

    make: ClassVar[type[Policy]]

    def policy(self) -> Policy:
        return self.make()

    def test_empty(self) -> None:
        """A new policy holds nothing and has nothing to evict."""
        p = self.policy()
        assert len(p) == 0
        assert p.lookup("a") is None
        assert "a" not in p
        with pytest.raises(KeyError):
            p.evict()

    def test_put_get_remove(self) -> None:
        """Put stores, get returns, remove returns the value once."""
        p = self.policy()
        assert p.put("a", b"1", 2) is None
        assert p.lookup("a") == b"1"
        p.touch("a")
        assert "a" in p
        assert len(p) == 1
        assert p.remove("a") == b"1"
        assert p.remove("a") is None
        assert len(p) == 0

    def test_replace_returns_old_value(self) -> None:
        """A replace returns the old value and keeps one entry."""
        p = self.policy()
        p.put("a", b"1", 2)
        assert p.put("a", b"22", 3) == b"1"
        assert len(p) == 1
        assert p.lookup("a") == b"22"

    def test_evict_drains_every_entry_once(self) -> None:
        """Evicting until empty returns each entry exactly once, with its value."""
        p = self.policy()
        items = {f"k{i}": str(i).encode() for i in range(50)}
        for k, v in items.items():
            p.put(k, v, len(k) + len(v))
        for k in list(items)[::3]:
            p.touch(k)
        seen = dict(p.evict() for _ in range(len(items)))
        assert seen == items
        assert len(p) == 0

    def test_clear_and_keys(self) -> None:
        """keys() lists what is held; clear() empties."""
        p = self.policy()
        for k in "abc":
            p.put(k, b"v", 2)
        assert sorted(p.keys()) == ["a", "b", "c"]
        p.clear()
        assert len(p) == 0
        assert list(p.keys()) == []
