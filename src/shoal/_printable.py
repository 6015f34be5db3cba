"""Text from the network made safe for one log line.

A key, a path or a peer's error text may hold any character, a newline
included; written to a log as it is, one request could forge log lines. Every
log line that shows such text passes it through :func:`printable`. Leaf module:
stdlib only, no state.
"""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """``text`` itself if it is printable and has no backslash, else its escaped form
    (``repr`` without the quotes: ``a\\nb`` for a newline), so the result is one
    line and an escape in it cannot be confused with a character of the text."""
    if text.isprintable() and "\\" not in text:
        return text
    return repr(text)[1:-1]
