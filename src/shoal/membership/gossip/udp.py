"""Gossip membership over UDP: drives the :class:`~.swim.Swim` state machine.

This module owns the I/O and nothing else: one datagram socket, a loop that
calls :meth:`Swim.tick` when its next deadline comes, and the translation of
the live member table into :class:`~shoal.membership.Member` snapshots. Every
protocol decision lives in :mod:`.swim`. A datagram whose handling fails
unexpectedly is counted (``dropped["error"]``) and the first such failure
logged; nothing a datagram holds can stop the socket's loop.

With a keyring (:attr:`GossipConfig.keyring`) every datagram is sealed before it
is sent and opened before :mod:`.messages` decodes it (:mod:`.keyring`); one that
does not open is dropped and counted by reason (``unsealed``, ``auth``,
``replay``, ``stale``) and never reaches the decoder. ``accept_plain`` lets plain
datagrams through too and ``send_plain`` sends plain ones: the steps of a live
upgrade from plain to sealed gossip.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import random
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ...config import GossipConfig
from ...errors import ConfigError, MembershipError
from .. import Member, MemberSet, SnapshotChannel
from .keyring import OVERHEAD, VERSION, Keyring, Sealer, SealError, load_keyring
from .messages import format_address, parse_address
from .swim import Address, Status, Swim

__all__ = ["GossipMembership"]

log = logging.getLogger("shoal.membership")

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: GossipMembership) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._owner._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a member that is gone: the probes notice.
        log.debug("gossip socket: %s", exc)


class GossipMembership:
    """Members found by gossip: SWIM over UDP from one or a few bootstrap addresses.

    Args:
        config: socket, bootstrap addresses and timers.
        node_id: this node's id (its name in the member table).
        url: this node's URL on the ring (published to the others).
        host: the node's listening host, used when ``config.host`` is None.
        url_host: the host of ``url``: the address advertised when listening on a
            wildcard address without ``config.advertise``.
        grpc: this node's gRPC address, if it serves one.
        started_at: when this process started (Unix seconds).
        rng: randomness for the protocol (default: a fresh ``random.Random``).
        clock: monotonic time source.
        wall: wall-clock time source (Unix seconds), which stamps sealed datagrams.

    Raises:
        ConfigError: the keyring file cannot be read or holds a bad line.
    """

    source = "gossip"

    def __init__(
        self,
        config: GossipConfig,
        *,
        node_id: str,
        url: str,
        host: str = "127.0.0.1",
        url_host: str | None = None,
        grpc: str | None = None,
        started_at: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.url = url
        self._bind_host = config.host or host
        self._url_host = url_host
        self._meta = {"url": url, "started_at": repr(started_at or time.time())}
        if grpc is not None:
            self._meta["grpc"] = grpc
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall = wall
        self._keyring: Keyring | None = None
        self._sealer: Sealer | None = None
        if config.keyring is not None:
            self._keyring = Keyring(load_keyring(config.keyring))
            _warn_if_shared(config.keyring)
            self._sealer = Sealer(
                self._keyring, cluster=config.cluster, window=config.replay_window
            )
        self._refusals_logged: set[str] = set()
        self._swim: Swim | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._wake = asyncio.Event()
        self._channel = SnapshotChannel()
        self._published = -1
        self._closed = False
        self._error_logged = False
        self.address: Address | None = None
        """Where the others send to this node, once started."""

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> MemberSet:
        """Open the socket and join through the bootstrap addresses.

        Waits up to ``2 * join_interval`` for a bootstrap member to answer, so the
        first view usually holds the whole cluster; without an answer the node
        starts alone and keeps trying.

        Raises:
            MembershipError: the socket cannot be opened.
        """
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self), local_addr=(self._bind_host, self.config.port)
            )
        except OSError as exc:
            raise MembershipError(
                f"cannot listen for gossip on {self._bind_host}:{self.config.port}: {exc}"
            ) from exc
        self._transport = transport
        bound = transport.get_extra_info("sockname")
        self.address = await self._advertised(int(bound[1]))
        seeds = await self._resolve_seeds()
        self._swim = Swim(
            name=self.node_id,
            address=self.address,
            meta=self._meta,
            config=self.config,
            rng=self._rng,
            now=self._clock(),
            seeds=seeds,
            overhead=OVERHEAD if self._sealer is not None else 0,
        )
        others = [format_address(s) for s in seeds if s != self.address]
        log.info(
            "gossip on %s as %s%s%s",
            format_address(self.address),
            self.node_id,
            f"; joining through {', '.join(others)}" if others else "",
            self._sealing(),
        )
        if self._sealer is not None and self.config.accept_plain:
            log.warning(
                "gossip accepts plain datagrams (accept_plain)%s: finish the upgrade to "
                "sealed gossip by restarting every member without it",
                " and sends plain ones (send_plain)" if self.config.send_plain else "",
            )
        self._step()
        if others:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * self.config.join_interval):
                    while not self._swim.joined:
                        await self._wait_wake(self._swim.next_deadline())
                        self._step()
            if not self._swim.joined:
                log.warning("no bootstrap member answered yet; running alone and retrying")
        return self._publish()

    async def run(self) -> None:
        """Run the protocol's timers until cancelled (or until :meth:`aclose`)."""
        swim = self._require()
        while not self._closed:
            await self._wait_wake(swim.next_deadline())
            self._step()

    def snapshots(self) -> AsyncIterator[MemberSet]:
        """The live members (alive or suspect), then each change."""
        return self._channel.snapshots()

    def reload_keyring(self) -> None:
        """Read the keyring file again and use its keys from the next datagram on
        (``SIGHUP``): rotation. A file that fails to load changes nothing.

        Raises:
            ConfigError: the file cannot be read or holds a bad line (the old keys stay).
        """
        if self._keyring is None or self.config.keyring is None:
            return
        self._keyring.install(load_keyring(self.config.keyring))
        log.info("gossip keyring: %d keys, primary %s", *self._key_summary())

    @property
    def has_view(self) -> bool:
        """True once a bootstrap member answered the join (at once without one)."""
        return self._swim is not None and self._swim.joined

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """URL order: every node discovers the same members, in any order."""
        return sorted(urls)

    def statistics(self) -> dict[str, Any]:
        """Traffic counters and the member table's state counts."""
        info: dict[str, Any] = {"source": self.source}
        if self._swim is None:
            return info
        stats = self._swim.statistics()
        counts = dict.fromkeys((s.value for s in Status), 0)
        for member in self._swim.members():
            counts[member.status.value] += 1
        info.update(
            address=format_address(self._swim.address),
            incarnation=self._swim.incarnation,
            states=counts,
            packets_sent=stats.packets_sent,
            bytes_sent=stats.bytes_sent,
            packets_received=stats.packets_received,
            bytes_received=stats.bytes_received,
            bad_packets=stats.bad_packets,
            probes=stats.probes,
            indirect_probes=stats.indirect_probes,
            suspicions=stats.suspicions,
            deaths=stats.deaths,
            refutations=stats.refutations,
            dropped=dict(stats.dropped),
        )
        if self._keyring is not None:
            info["keyring"] = {
                "keys": list(self._keyring.fingerprints),
                "sends": "plain" if self.config.send_plain else "sealed",
                "accepts_plain": self.config.accept_plain,
                "cluster": self.config.cluster,
            }
        return info

    async def aclose(self) -> None:
        """Announce the leave to every live member, then close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._swim is not None and self._transport is not None:
            self._swim.leave(self._clock())
            self._flush()
            log.info("left the gossip cluster")
        if self._transport is not None:
            self._transport.close()

    # -- internals -------------------------------------------------------------

    def _require(self) -> Swim:
        if self._swim is None:
            raise RuntimeError("the gossip membership is not started")
        return self._swim

    async def _wait_wake(self, deadline: float) -> None:
        delay = max(0.0, min(deadline - self._clock(), 3600.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    def _key_summary(self) -> tuple[int, str]:
        assert self._keyring is not None
        names = self._keyring.fingerprints
        return len(names), names[0]

    def _sealing(self) -> str:
        if self._keyring is None:
            return "; plain datagrams (no keyring)"
        count, primary = self._key_summary()
        return f"; sealed with AES-GCM ({count} keys, primary {primary})"

    def _open(self, swim: Swim, data: bytes, source: Address) -> bytes | None:
        """The message in ``data``, or None when the keyring refuses it (counted)."""
        assert self._sealer is not None
        if data[:1] != bytes([VERSION]) and self.config.accept_plain:
            return data
        try:
            return self._sealer.open(data, self._wall())
        except SealError as exc:
            swim.refuse(exc.reason, len(data))
            first = exc.reason not in self._refusals_logged
            self._refusals_logged.add(exc.reason)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "gossip datagram from %s dropped (%s): %s%s",
                format_address(source),
                exc.reason,
                exc,
                "; further ones are counted in shoal_gossip_dropped_total" if first else "",
            )
            return None

    def _received(self, data: bytes, source: Address) -> None:
        swim = self._swim
        if swim is None or self._closed:
            return
        if self._sealer is not None:
            opened = self._open(swim, data, source)
            if opened is None:
                return
            data = opened
        try:
            swim.receive(self._clock(), data, source)
        except Exception:  # no datagram may stop the node: count it, log the first
            swim.drop("error")
            what = f"handling a gossip datagram from {format_address(source)} failed"
            if not self._error_logged:
                self._error_logged = True
                log.exception(what)
            else:
                log.debug(what, exc_info=True)
        self._flush()
        self._publish()
        # The deadlines may have moved (a new probe target, news to gossip).
        self._wake.set()

    def _step(self) -> None:
        swim = self._require()
        if self._closed:
            return
        swim.tick(self._clock())
        self._flush()
        self._publish()

    def _flush(self) -> None:
        if self._swim is None or self._transport is None or self._transport.is_closing():
            return
        sealer = None if self.config.send_plain else self._sealer
        for address, data in self._swim.take_outgoing():
            if sealer is not None:
                data = sealer.seal(data, self._wall())
            try:
                self._transport.sendto(data, address)
            except OSError as exc:  # unreachable network while isolated, etc.
                log.debug("gossip send to %s failed: %s", format_address(address), exc)

    def _publish(self) -> MemberSet:
        swim = self._require()
        if swim.version == self._published:
            return self._channel.current
        self._published = swim.version
        members = []
        for state in swim.live():
            url = state.meta.get("url")
            if not url:
                continue
            started = state.meta.get("started_at")
            try:
                started_at = float(started) if started is not None else None
            except ValueError:
                started_at = None
            if started_at is not None and not math.isfinite(started_at):
                started_at = None
            members.append(
                Member(
                    node_id=state.name,
                    url=url,
                    source=self.source,
                    grpc=state.meta.get("grpc"),
                    started_at=started_at,
                    gossip=format_address(state.address),
                )
            )
        self._channel.publish(members)
        return self._channel.current

    async def _advertised(self, port: int) -> Address:
        if self.config.advertise is not None:
            host, adv_port = parse_address(self.config.advertise)
            return await _resolve(host), adv_port
        host = self._bind_host
        if host in _WILDCARDS:
            if self._url_host is None or self._url_host in _WILDCARDS:
                raise ConfigError(
                    "gossip listens on a wildcard address: give the address others "
                    "reach it on (gossip advertise)"
                )
            host = self._url_host
        return await _resolve(host), port

    async def _resolve_seeds(self) -> list[Address]:
        seeds = []
        for host, port in self.config.seeds():
            try:
                seeds.append((await _resolve(host), port))
            except OSError as exc:
                log.warning("cannot resolve gossip bootstrap address %s: %s", host, exc)
        return seeds


def _warn_if_shared(path: str) -> None:
    """Log a warning when users other than the file's owner may read the keyring."""
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if mode & 0o077:
            log.warning(
                "the gossip keyring %s can be read by other users (mode %04o): chmod 600 it",
                path,
                stat.S_IMODE(mode),
            )


async def _resolve(host: str) -> str:
    """An IP address for ``host`` (datagrams go to addresses, not names)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])
