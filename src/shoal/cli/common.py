"""What every ``shoal`` command shares: defaults, exit codes, errors, logging, the parser class.

Rules: this module imports nothing of the CLI but :mod:`shoal.cli.tracing` (the log
label), so every command module may import it. A command reports a failure by
raising :class:`~shoal.errors.ConfigError` (a usage or configuration error, exit 2)
or :class:`CommandError` (a runtime failure, exit 1); :func:`report_error` prints
either as one line of stderr.
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Final, NoReturn, Protocol

from .tracing import NodeLabel

__all__ = [
    "DEFAULT_API_HOST",
    "DEFAULT_API_PORT",
    "DEFAULT_URL",
    "DEFAULT_PEER_PORT",
    "DEMO_GROUP",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "LOG_LEVELS",
    "LOG_FORMAT",
    "CommandError",
    "Parser",
    "configure_logging",
    "report_error",
    "given",
    "pick_free_ports",
    "ArgumentContainer",
    "FlagSet",
    "StopSignals",
]

DEFAULT_API_HOST: Final = "127.0.0.1"
"""Where ``shoal serve`` listens unless told otherwise (loopback: nothing is exposed by default)."""

DEFAULT_API_PORT: Final = 9999
"""The HTTP API port of ``shoal serve``, as in the geecache demo."""

DEFAULT_URL: Final = f"http://{DEFAULT_API_HOST}:{DEFAULT_API_PORT}"
"""The node the client commands talk to by default."""

DEFAULT_PEER_PORT: Final = 8001
"""The first peer port of ``shoal cluster``, as in the groupcache demo."""

DEMO_GROUP: Final = "scores"
"""The group ``--slowdb`` adds."""

EXIT_OK: Final = 0
"""The command did what it was asked."""
EXIT_FAILURE: Final = 1
"""A runtime failure: an error answer, a server out of reach, a port that cannot be bound."""
EXIT_USAGE: Final = 2
"""A usage or configuration error (as argparse's own)."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
"""The values of ``--log-level``."""

LOG_FORMAT: Final = "%(asctime)s %(node)s%(levelname)-7s %(name)s: %(message)s"
"""How ``serve`` and ``cluster`` log: ``%(node)s`` is ``[node 8001] `` in a cluster."""


class CommandError(Exception):
    """A command failed at run time (exit code 1); the message is printed as is."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors in shoal's format (exit code 2, as argparse)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line that points at ``--help``, and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class ArgumentContainer(Protocol):
    """An argparse parser or argument group: something flags are added to."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """Add one flag (as :meth:`argparse.ArgumentParser.add_argument`)."""
        ...


class FlagSet:
    """The flags one function added to a parser, remembered as they are added.

    ``shoal cluster`` passes the flags of ``serve`` on to each node as given; this
    list is how it knows them, without reading argparse's private action list.
    """

    def __init__(self) -> None:
        self.actions: list[argparse.Action] = []
        """The actions added so far, in order."""

    def add(self, container: ArgumentContainer, *args: Any, **kwargs: Any) -> argparse.Action:
        """Add a flag to ``container`` (a parser or an argument group) and remember it."""
        action = container.add_argument(*args, **kwargs)
        self.actions.append(action)
        return action


def configure_logging(level: str, label: NodeLabel) -> None:
    """Log to stderr at ``level``, every line prefixed by ``label``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(label)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def report_error(command: str, exc: BaseException | str, code: int) -> int:
    """Print ``shoal COMMAND: error: ...`` on stderr and return ``code``."""
    print(f"shoal {command}: error: {exc}", file=sys.stderr, flush=True)
    return code


def given(*values: Any) -> Any:
    """The first value that is not None, or None."""
    return next((v for v in values if v is not None), None)


def pick_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that nothing listens on now, below 32768.

    Below the kernel's ephemeral range (32768 and up on Linux), so a port picked
    here cannot be taken meanwhile by the local end of some outgoing connection.

    Raises:
        CommandError: not enough free ports were found.
    """
    rng = random.Random()
    ports: list[int] = []
    for _ in range(count * 200):
        if len(ports) == count:
            break
        port = rng.randrange(20000, 32768)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < count:
        raise CommandError(f"could not find {count} free ports on {host}")
    return ports


class StopSignals:
    """Tells a first stop signal from a repeat, and a repeat from a second request.

    A signal that arrives within ``window`` seconds of the first is the same request
    delivered twice (to the process group and again by a parent that forwards it, as
    ``make``, ``timeout`` and init systems do), and changes nothing; a later one is a
    second request (a second Ctrl-C: the user wants out now).

    Args:
        window: seconds after the first signal within which a repeat is ignored.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(self, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._first: float | None = None

    def received(self) -> str:
        """Note a signal; return ``"first"``, ``"repeat"`` (ignore it) or ``"again"``."""
        now = self._clock()
        if self._first is None:
            self._first = now
            return "first"
        return "repeat" if now - self._first < self._window else "again"
