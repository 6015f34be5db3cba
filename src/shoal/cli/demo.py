"""``shoal demo``: the groupcache demos' tour, scripted and checking itself.

Three ``shoal serve --slowdb`` nodes share one slow database. The tour asks
every node for the same names, shows from the nodes' own logs that the
database was asked once per name in the whole cluster (by the name's owner),
asks again to show the hits, SIGKILLs a node and shows that the two survivors
still answer, loading its keys themselves. Every step checks what it shows;
the exit code is 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError
from ..ring import Ring
from .cluster import ClusterError, Member, Supervisor, describe_exit
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError, pick_free_ports, report_error
from .http_client import RequestFailed, request_async
from .parse import parse_duration
from .slowdb import SCORES, create_scores_db

__all__ = ["run_demo", "ASKED"]

ASKED: Final = ("Tom", "Jack", "Sam")
"""The names the tour asks every node for (the groupcache demo's)."""

NODES: Final = 3

# "2024-05-01 12:00:00,123 [node 8001] INFO    shoal.demo: message"
_LOG_LINE: Final = re.compile(
    r"^(?P<time>\S+ \S+) (?P<node>\[[^\]]*\] )?"
    r"(?P<level>[A-Z]+)\s+(?P<logger>\S+): (?P<message>.*)$"
)


def _searches(text: str, key: str) -> int:
    """How many times a node's log says SlowDB searched ``key``."""
    return len(re.findall(rf"\[SlowDB\] search key {re.escape(key)}$", text, re.MULTILINE))


def _excerpt(text: str, needles: Sequence[str]) -> list[tuple[str, str]]:
    """The log lines that contain one of ``needles``, as (time stamp, line without time
    stamp, level and logger)."""
    lines = []
    for line in text.splitlines():
        if not any(needle in line for needle in needles):
            continue
        match = _LOG_LINE.match(line)
        if match:
            lines.append((match["time"], f"{match['node'] or ''}{match['message']}"))
        else:
            lines.append(("", line))
    return lines


class Tour:
    """The tour's state: the nodes, the checks so far, and what it prints."""

    def __init__(self, supervisor: Supervisor, members: list[Member]) -> None:
        self.supervisor = supervisor
        self.members = members
        self.ring = Ring.build([m.url for m in members])
        self.passed = 0
        self.failed: list[str] = []
        self.step_number = 0

    # -- output ------------------------------------------------------------------

    def step(self, title: str) -> None:
        """Print the heading of the next step."""
        self.step_number += 1
        print(f"\n[{self.step_number}] {title}", flush=True)

    def say(self, text: str = "") -> None:
        """Print an indented paragraph of explanation."""
        if not text:
            print(flush=True)
        else:
            print(textwrap.fill(text, 92, initial_indent="    ", subsequent_indent="    "))

    def row(self, text: str) -> None:
        """Print an indented line as it is (a table row, a log line)."""
        print(f"    {text}".rstrip(), flush=True)

    def check(self, ok: bool, text: str) -> bool:
        """Record and print one check."""
        if ok:
            self.passed += 1
        else:
            self.failed.append(text)
        print(f"    {'ok  ' if ok else 'FAIL'} {text}", flush=True)
        return ok

    # -- helpers -----------------------------------------------------------------

    def owner(self, key: str) -> Member:
        """The member that owns ``key`` on the ring every node uses."""
        url = self.ring.owner(key)
        return next(m for m in self.members if m.url == url)

    @property
    def alive(self) -> list[Member]:
        """The members still running."""
        return [m for m in self.members if m.alive]

    async def get(self, member: Member, key: str) -> tuple[int, bytes]:
        """``GET /api?key=KEY`` on ``member``'s HTTP API; status 0 if it could not be asked."""
        try:
            reply = await request_async("GET", f"{member.api_url}/api?key={key}", timeout=10)
        except RequestFailed as exc:
            return 0, str(exc).encode()
        return reply.status, reply.body

    async def ask(
        self, members: Sequence[Member], keys: Sequence[str], *, one_by_one: bool = False
    ) -> bool:
        """Ask every member for every key (all at once, or one request after the other);
        print the answers; check them."""
        jobs = [(m, k) for m in members for k in keys]
        if one_by_one:
            answers = [await self.get(m, k) for m, k in jobs]
        else:
            answers = await asyncio.gather(*(self.get(m, k) for m, k in jobs))
        got = dict(zip(jobs, answers, strict=True))
        width = max(len(k) for k in keys) + 2
        self.row(" " * 12 + "".join(k.ljust(width) for k in keys))
        wrong = []
        for m in members:
            cells = []
            for k in keys:
                status, body = got[m, k]
                cells.append(body.decode(errors="replace") if status == 200 else f"!{status}")
                if status != 200 or body != str(SCORES[k]).encode():
                    wrong.append(f"{m.name} {k}: {status} {body[:80]!r}")
            self.row(f"{m.name:<12}" + "".join(c.ljust(width) for c in cells))
        return self.check(
            not wrong,
            f"all {len(jobs)} answers match the database"
            if not wrong
            else f"wrong answers: {'; '.join(wrong)}",
        )

    def searches(self, key: str, members: Iterable[Member] | None = None) -> dict[str, int]:
        """SlowDB searches of ``key`` per node, from the nodes' logs."""
        return {
            m.name: _searches(m.log_text(), key)
            for m in (self.members if members is None else members)
        }

    async def stats(self, member: Member) -> dict[str, Any]:
        """The ``scores`` group's statistics on ``member`` (empty if unavailable)."""
        try:
            reply = await request_async("GET", f"{member.api_url}/v1/stats", timeout=10)
            groups: dict[str, dict[str, Any]] = json.loads(reply.body)["groups"]
            return groups["scores"] if reply.status == 200 else {}
        except (RequestFailed, ValueError, KeyError, TypeError):
            return {}

    async def stats_table(self, members: Sequence[Member]) -> dict[str, dict[str, Any]]:
        """Print and return the statistics of ``members``."""
        all_stats = await asyncio.gather(*(self.stats(m) for m in members))
        columns = (
            ("gets", "gets"),
            ("hits", "hits"),
            ("loaded here", "local_loads"),
            ("from peers", "peer_loads"),
            ("peer errors", "peer_errors"),
            ("served", "server_requests"),
        )
        self.row(" " * 12 + "".join(f"{title:>13}" for title, _ in columns))
        for m, st in zip(members, all_stats, strict=True):
            self.row(f"{m.name:<12}" + "".join(f"{st.get(k, '?')!s:>13}" for _, k in columns))
        return {m.name: st for m, st in zip(members, all_stats, strict=True)}

    def show_log(self, needles: Sequence[str], members: Iterable[Member] | None = None) -> None:
        """Print the log lines of ``members`` that contain one of ``needles``, oldest first."""
        lines = []
        for m in self.members if members is None else members:
            lines += _excerpt(m.log_text(), needles)
        for _, line in sorted(lines, key=lambda item: item[0]):  # stable: ties keep node order
            self.row(f"  {line}")

    # -- the tour ----------------------------------------------------------------

    async def run(self, delay: float) -> None:
        """Walk through the steps; checks are recorded as they go."""
        await self.start(delay)
        if self.failed:
            return
        await self.first_round()
        await self.second_round()
        await self.writes()
        victim, fresh = self.choose_victim()
        await self.kill(victim)
        await self.survivors(victim, fresh)
        await self.stop()

    async def start(self, delay: float) -> None:
        """Step: start the nodes and wait until they answer."""
        self.step(f"Starting {len(self.members)} nodes in front of one slow database")
        self.say(f"SlowDB: {len(SCORES)} scores in SQLite, {delay * 1000:g} ms per query")
        await self.supervisor.start()
        for m in self.members:
            pid = m.proc.pid if m.proc is not None else 0
            self.say(f"{m.name}: peers {m.url}, HTTP API {m.api_url} (pid {pid})")
        try:
            await self.supervisor.wait_ready()
        except ClusterError as exc:
            self.check(False, str(exc))
            return
        self.check(True, f"all {len(self.members)} nodes answer /healthz")

    async def first_round(self) -> None:
        """Step: every node is asked for the same names at the same moment."""
        self.step(f"Asking every node for {', '.join(ASKED)}, all {len(ASKED) * 3} at once")
        await self.ask(self.members, ASKED)
        self.step("Who asked the database? (from the nodes' logs)")
        for key in ASKED:
            owner = self.owner(key)
            counts = self.searches(key)
            total = sum(counts.values())
            self.check(
                total == 1 and counts[owner.name] == 1,
                f"exactly one '[SlowDB] search key {key}' in the whole cluster, "
                f"on {key}'s owner {owner.name}"
                if total == 1 and counts[owner.name] == 1
                else f"'[SlowDB] search key {key}' per node: {counts} (owner {owner.name})",
            )
        key = ASKED[0]
        self.say()
        self.say(f"What each node logged about {key!r}:")
        self.show_log([f"'{key}'", f"search key {key}"])

    async def second_round(self) -> None:
        """Step: the same requests again are hits everywhere."""
        before = {key: sum(self.searches(key).values()) for key in ASKED}
        self.step("Asking again: the answers now come from memory")
        await self.ask(self.members, ASKED)
        after = {key: sum(self.searches(key).values()) for key in ASKED}
        self.check(after == before, "no new database search")
        self.say()
        stats = await self.stats_table(self.members)
        self.say("(owners answer from their main cache, the others from a hot copy:")
        self.say(" the nodes run with --hot-admission always)")
        self.check(
            all(st.get("hits", 0) >= len(ASKED) for st in stats.values()),
            f"every node answered the second round's {len(ASKED)} requests from memory (hits)",
        )

    async def writes(self) -> None:
        """Step: a write on one node is what every node answers; a delete reaches all."""
        key = ASKED[0]
        owner = self.owner(key)
        writer = next(m for m in self.members if m is not owner)
        path = f"/v1/groups/scores/keys/{key}"
        self.step(f"Writing {key}=700 on {writer.name}, which does not own {key}")
        self.say(f"stored at the owner {owner.name}, every other copy dropped before the 204")
        reply = await request_async("PUT", writer.api_url + path, body=b"700", timeout=10)
        status = reply.status
        answers = await asyncio.gather(*(self.get(m, key) for m in self.members))
        self.check(
            status == 204 and all(a == (200, b"700") for a in answers),
            f"every node answers {key}=700 at once"
            if status == 204 and all(a == (200, b"700") for a in answers)
            else f"PUT answered {status}; answers {answers}",
        )
        before = sum(self.searches(key).values())
        deleter = self.members[-1] if self.members[-1] is not writer else self.members[0]
        self.step(f"Deleting {key} on {deleter.name}: every copy goes, the database is asked again")
        await request_async("DELETE", deleter.api_url + path, timeout=10)
        answers = await asyncio.gather(*(self.get(m, key) for m in self.members))
        after = self.searches(key)
        self.check(
            all(a == (200, str(SCORES[key]).encode()) for a in answers)
            and sum(after.values()) == before + 1
            and after[owner.name] >= 1,
            f"every node answers the database's {key}={SCORES[key]} again, loaded once, "
            f"by the owner {owner.name}",
        )

    def choose_victim(self) -> tuple[Member, list[str]]:
        """The node to kill, and the names it owns that nobody asked for yet.

        The owner of Tom if it owns some of the names not asked yet; otherwise the
        node owning most of them (three nodes, seven names: some node owns three).
        """
        fresh = [k for k in SCORES if k not in ASKED]
        owned = {m.name: [k for k in fresh if self.owner(k) is m] for m in self.members}
        tom = self.owner(ASKED[0])
        if owned[tom.name]:
            return tom, owned[tom.name]
        victim = max(self.members, key=lambda m: len(owned[m.name]))
        return victim, owned[victim.name]

    async def kill(self, victim: Member) -> None:
        """Step: SIGKILL a node."""
        keys = [k for k in SCORES if self.owner(k) is victim]
        pid = victim.proc.pid if victim.proc is not None else 0
        self.step(f"SIGKILL {victim.name} (pid {pid}), the owner of {', '.join(keys)}")
        self.supervisor.kill(victim, signal.SIGKILL)
        code = await self.supervisor.wait(victim)
        self.check(code == -signal.SIGKILL, f"{victim.name} {describe_exit(code)}")

    async def survivors(self, victim: Member, fresh: list[str]) -> None:
        """Step: the survivors answer for the dead node's keys."""
        survivors = self.alive
        keys = [k for k in SCORES if self.owner(k) is victim]
        asked = [k for k in keys if k in ASKED]
        self.step(f"Asking the survivors for {victim.name}'s names: {', '.join(keys)}")
        if asked:
            self.say(f"{', '.join(asked)}: asked before, so each survivor has a hot copy")
        self.say(
            f"{', '.join(fresh)}: never asked; the owner is dead, so a survivor tries it "
            "once, then loads the name itself and skips the dead node for a while"
        )
        before = {k: sum(self.searches(k).values()) for k in asked}
        # One request at a time, so that each node's log reads as a story.
        await self.ask(survivors, keys, one_by_one=True)
        for key in asked:
            self.check(
                sum(self.searches(key).values()) == before[key],
                f"{key}: served from hot copies, no new database search",
            )
        for key in fresh:
            counts = self.searches(key, survivors)
            self.check(
                all(n >= 1 for n in counts.values()),
                f"{key}: loaded by the survivors themselves "
                f"({', '.join(f'{name}: {n} search' for name, n in counts.items())})",
            )
        stats = await self.stats_table(survivors)
        for survivor in survivors:
            errors = stats[survivor.name].get("peer_errors", 0)
            self.check(
                errors >= 1,
                f"{survivor.name}: {errors} failed request(s) to the dead node; then it "
                "skips it for a while (--peer-backoff) and loads its names itself",
            )
        first = survivors[0]
        self.say()
        self.say(f"What {first.name} logged about {fresh[0]!r} and {fresh[-1]!r}:")
        self.show_log([f"'{fresh[0]}'", f"'{fresh[-1]}'", f"search key {fresh[0]}"], [first])

    async def stop(self) -> None:
        """Step: stop the survivors."""
        self.step("Stopping the survivors (SIGTERM)")
        survivors = self.alive
        codes = await self.supervisor.stop()
        self.check(
            len(codes) == len(survivors) and all(code == 0 for code in codes.values()),
            "they stopped cleanly"
            if all(code == 0 for code in codes.values())
            else f"exit codes: {codes}",
        )


def run_demo(args: argparse.Namespace) -> int:
    """Run ``shoal demo``; return the exit code (0: every check passed)."""
    try:
        delay = parse_duration(args.slowdb_delay, what="--slowdb-delay", allow_zero=True)
        if args.port is not None:
            if not 1 <= args.port <= 65535 - 2 * NODES:
                raise ConfigError(f"--port must leave room for {2 * NODES} ports, got {args.port}")
            ports = [args.port + i for i in range(2 * NODES)]
        else:
            ports = pick_free_ports(2 * NODES)
    except (ConfigError, CommandError) as exc:
        return report_error("demo", exc, EXIT_USAGE)
    workdir = Path(tempfile.mkdtemp(prefix="shoal-demo-"))
    try:
        db = create_scores_db(workdir / "scores.db")
        members = [
            Member(
                index=i,
                host="127.0.0.1",
                peer_port=ports[i],
                api_port=ports[NODES + i],
                log_path=workdir / f"node{i + 1}.log",
            )
            for i in range(NODES)
        ]
        peers = ",".join(m.url for m in members)
        argv = [
            [
                "serve",
                "--slowdb",
                "--slowdb-file",
                str(db),
                "--slowdb-delay",
                f"{delay}",
                "--hot-admission",
                "always",
                "--api-port",
                str(m.api_port),
                "--port",
                str(m.peer_port),
                "--self",
                m.url,
                "--peers",
                peers,
                "--log-level",
                "info",
                "--supervised",
            ]
            for m in members
        ]
        supervisor = Supervisor(members, argv)
        tour = Tour(supervisor, members)
        print(
            "shoal demo: a 3-node cluster in front of one slow database, as in the "
            "groupcache demos",
            flush=True,
        )
        try:
            asyncio.run(_run(tour, supervisor, delay))
        except KeyboardInterrupt:
            print("\nshoal demo: interrupted", flush=True)
            return 130
        if args.show_logs or tour.failed:
            for m in members:
                print(f"\n--- {m.name} log ---", flush=True)
                print(m.log_text().rstrip(), flush=True)
        print(flush=True)
        if tour.failed:
            print(f"shoal demo: {len(tour.failed)} check(s) FAILED:", flush=True)
            for text in tour.failed:
                print(f"  - {text}", flush=True)
            return EXIT_FAILURE
        print(f"shoal demo: all {tour.passed} checks passed", flush=True)
        return EXIT_OK
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(tour: Tour, supervisor: Supervisor, delay: float) -> None:
    try:
        await tour.run(delay)
    finally:
        await supervisor.stop()  # whatever still runs: SIGTERM, then SIGKILL
