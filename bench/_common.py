"""Helpers shared by the benchmark scripts: Markdown tables, statistics, event loops.

Not a benchmark itself. Each script in this directory puts its own directory
first on ``sys.path`` when run, which is how they import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = [
    "BenchError",
    "child_process",
    "environment",
    "loop_factories",
    "markdown_table",
    "median",
    "process_cpu_seconds",
    "ratio",
    "spawn",
    "stop",
]


class BenchError(Exception):
    """A benchmark found a wrong result (as opposed to a slow one): the script exits 1."""


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """Render a Markdown table; ``align`` has one letter per column, ``l`` or ``r``.

    Cells are padded so the table also reads well as plain text.
    """
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = (
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(row, widths, align, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1))
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def time_rounds(
    candidates: Mapping[str, Callable[[str], object]], order: Sequence[str], rounds: int
) -> dict[str, list[float]]:
    """Microseconds per call of each candidate over ``order``, one sample per round,
    the candidates taking turns within each round, the garbage collector off."""
    import gc

    times: dict[str, list[float]] = {name: [] for name in candidates}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, call in candidates.items():
                start = time.perf_counter()
                for key in order:
                    call(key)
                times[name].append((time.perf_counter() - start) / len(order) * 1e6)
    finally:
        gc.enable()
    return times


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time process ``pid`` has used so far, all its threads: (user, system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` formatted as ``1.23x``."""
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Event loop constructors to compare: asyncio's, and uvloop's when it is installed."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


def environment() -> str:
    """One line naming the interpreter and platform, printed under each table."""
    impl = platform.python_implementation()
    version = ".".join(map(str, sys.version_info[:3]))
    return f"{impl} {version} on {platform.system()} {platform.machine()}"


def run(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's ``main`` and exit with its code; a :class:`BenchError`
    (something is wrong, not slow) is printed and exits 1."""
    try:
        code = main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


def spawn(
    cmd: Sequence[str],
    log: Path,
    *,
    stdin: int = subprocess.DEVNULL,
    new_session: bool = False,
    drop_env: tuple[str, ...] = ("SHOAL_",),
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its stdout and stderr going to ``log``.

    It runs without the caller's environment variables that start with one of
    ``drop_env`` (by default ``SHOAL_*``, so a setting of the caller's shell does
    not change what is measured) and finds this directory's modules on
    ``PYTHONPATH``. ``stdin`` is DEVNULL or PIPE (a Go node stops when its stdin
    closes; see :func:`stop`).
    """
    here = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_env)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=stdin,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=new_session,
        )


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """Stop processes together: close the stdin of those given a pipe, send
    SIGTERM to all, and SIGKILL those still running ``timeout`` seconds later."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def child_process(
    name: str,
    cmd: Sequence[str],
    log: Path,
    ready: Callable[[], bool],
    *,
    ready_timeout: float = 60.0,
    stop_timeout: float = 10.0,
    poll: float = 0.1,
    new_session: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` until the block ends; enter the block once ``ready()`` holds.

    The process is started by :func:`spawn` (its output goes to ``log``).
    ``ready`` is asked every ``poll`` seconds; raising OSError counts as not ready
    yet. At the end the process gets SIGTERM, then SIGKILL after ``stop_timeout``
    seconds. With ``new_session`` it runs in a session of its own, so a Ctrl-C in
    the terminal reaches the benchmark alone, which then stops it in that order
    (rather than every process stopping under the requests still in flight).

    Raises:
        BenchError: the process exited, or was not ready within ``ready_timeout``
            seconds (the message ends with the tail of its log).
    """
    proc = spawn(cmd, log, new_session=new_session)

    def tail() -> str:
        return log.read_text(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{tail()}")
            with contextlib.suppress(OSError):
                if ready():
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"{name} was not ready within {ready_timeout}s:\n{tail()}")
            time.sleep(poll)
        yield proc
    finally:
        stop([proc], stop_timeout)
