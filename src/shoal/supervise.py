"""Supervised background work: nothing that runs in the background stops the node.

A node's background tasks (the expiry sweep, a replicated group's pushes and
anti-entropy, the membership source and the task that follows it) each run as
:func:`supervised` rounds. The rules:

* A round that raises an :class:`Exception` is counted in
  :class:`BackgroundErrors` under its task's name, logged, and followed by a
  pause that doubles with each failure in a row (bounded); then the task goes
  on. A round that succeeds resets the pause.
* A failure is logged with its traceback the first time it is seen; the same
  failure again (same task, context, type and message) is logged at most once
  per ``log_interval``, with how many times it happened meanwhile, so a
  failure on every round never floods the log.
* Only :class:`Exception` is caught: cancellation (``CancelledError``),
  ``KeyboardInterrupt`` and ``SystemExit`` always propagate, so a task stops
  exactly when its owner stops it.

Async core: asyncio and the standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

__all__ = ["NODE_TASKS", "REPLICA_TASKS", "BackgroundErrors", "supervised"]

log = logging.getLogger("shoal.background")

NODE_TASKS: Final = ("sweep", "membership", "members")
"""The names the node's own background tasks count their failed rounds under."""
REPLICA_TASKS: Final = ("replica-push", "replica-probe", "anti-entropy")
"""The names a replicated group's background tasks count their failed rounds under."""

MAX_DISTINCT: Final = 256
"""Distinct failures remembered for rate-limited logging (then forgotten at once)."""


class BackgroundErrors:
    """How many rounds of each background task failed, and their rate-limited log.

    Args:
        tasks: task names counted from the start (their count shows as 0).
        log_interval: seconds between two log lines of the same failure.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        tasks: Iterable[str] = (),
        *,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts: dict[str, int] = dict.fromkeys(tasks, 0)
        self._log_interval = log_interval
        self._clock = clock
        # failure -> (when it was last logged, how often it happened since)
        self._logged: dict[tuple[str, str, str, str], tuple[float, int]] = {}

    def counts(self) -> dict[str, int]:
        """Failed rounds by task name (a copy)."""
        return dict(self._counts)

    def record(self, task: str, exc: Exception, context: str = "") -> None:
        """Count one failed round of ``task`` and log it unless logged lately.

        Args:
            task: the task's name (the ``task`` label of the metric).
            exc: what the round raised.
            context: where it happened (``group 'x', peer http://…``), for the log.
        """
        self._counts[task] = self._counts.get(task, 0) + 1
        key = (task, context, type(exc).__qualname__, str(exc)[:200])
        now = self._clock()
        seen = self._logged.get(key)
        if seen is not None and now - seen[0] < self._log_interval:
            self._logged[key] = (seen[0], seen[1] + 1)
            return
        if len(self._logged) >= MAX_DISTINCT:
            self._logged.clear()
        self._logged[key] = (now, 0)
        where = f" ({context})" if context else ""
        if seen is None:
            log.error("background task %s failed%s; going on", task, where, exc_info=exc)
        else:
            log.error(
                "background task %s failed%s again, %d more times in %.0f s: %s: %s",
                task,
                where,
                seen[1] + 1,
                now - seen[0],
                type(exc).__qualname__,
                exc,
            )


async def supervised(
    task: str,
    round_fn: Callable[[], Awaitable[object]],
    errors: BackgroundErrors,
    *,
    context: Callable[[], str] | str = "",
    forever: bool = True,
    initial: float = 0.1,
    maximum: float = 30.0,
    rng: random.Random | None = None,
) -> None:
    """Run ``round_fn`` round after round; a failed round is counted, logged and
    followed by a bounded exponential pause, then the next round starts.

    Args:
        task: the task's name in ``errors``.
        round_fn: one round (it does its own waiting between rounds).
        errors: where failures are counted.
        context: where the task works (or a function saying where the current round
            does), for the log.
        forever: with False, ``round_fn`` is the whole task: it is run again only
            after it fails, and this returns when it returns.
        initial: the first pause after a failure, in seconds.
        maximum: the longest pause.
        rng: jitters the pauses (by up to a quarter).

    Raises:
        CancelledError: when cancelled (and any other BaseException that is not
            an Exception): never swallowed.
    """
    pause = initial
    jitter = rng if rng is not None else random.Random()
    while True:
        try:
            await round_fn()
        except Exception as exc:
            errors.record(task, exc, context() if callable(context) else context)
            await asyncio.sleep(pause * jitter.uniform(0.75, 1.0))
            pause = min(pause * 2, maximum)
            continue
        if not forever:
            return
        pause = initial
