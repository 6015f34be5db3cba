"""DNS membership: the members are the records of one name, looked up every interval.

Two kinds of name:

- ``name`` (A/AAAA): every address is a member on this node's own peer port and
  scheme (``http`` or ``https``), as a headless Kubernetes service or a
  round-robin name lists the hosts of a cluster whose nodes all listen alike.
- ``srv`` (``_service._proto.name``): every SRV record is a member on its own
  port; its target is resolved to addresses (from the answer's additional
  section when the server put them there, else by a lookup of its own). Priority
  and weight do not matter: every record is a member.

The lookups go to the system's resolver (``getaddrinfo`` for A/AAAA, the servers
of ``/etc/resolv.conf`` for SRV) or to one DNS server (``server``, ``host:port``);
a DNS client is needed for SRV and for a server of one's own: dnspython, extra
``shoal[dns]``. A lookup runs at start and then every ``interval``; each takes
at most ``timeout`` seconds, SRV targets included.

A lookup that fails (a timeout, SERVFAIL, a refused query) or finds nothing
(NXDOMAIN, no records) keeps the last members found: the node serves on with
its last view, warns once per streak of such lookups, and shows the state in
:meth:`DnsMembership.statistics` (``GET /v1/cluster``, ``membership``). The node
is always a member of its own view: an address of its own (the host of its URL,
its bind address, or what the host of its URL resolves to) on its own port is
this node, under its own URL and node id, whatever the records say.

Answers are untrusted input: an address that is not a usable unicast one, a
port of 0 or a target that is not a name is skipped and counted
(``bad_records``); at most ``max_members`` members are taken from one answer, the
first in URL order (so every node that gets the same answer takes the same
ones), and the rest are counted (``left_out``). dnspython bounds the parsing of
a message (at most 64 KiB, over UDP or TCP).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from ..config import DnsConfig, default_node_id
from ..errors import MissingExtra
from . import BadInput, Member, MemberSet, SnapshotChannel, check_member_url

try:
    import dns.asyncresolver
    import dns.exception
    import dns.rdatatype
    import dns.resolver
except ImportError:  # pragma: no cover - depends on the installed extras
    _DNSPYTHON = False
else:
    _DNSPYTHON = True

__all__ = ["DnsMembership", "LookupFailed", "member_urls", "MAX_SRV_TARGETS"]

log = logging.getLogger("shoal.membership")

MAX_SRV_TARGETS: Final = 64
"""SRV targets resolved at once (the answer's additional section usually has them)."""

_NO_NAME: Final = frozenset(
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if hasattr(socket, name)
)
"""``getaddrinfo`` errors that mean the name has no address (not that the lookup failed)."""


class LookupFailed(Exception):
    """A lookup that got no answer (timeout, SERVFAIL, refused, no resolver)."""


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as a unicast address a member can have; None for anything else (not
    an address, unspecified, multicast, or IPv6 with a zone)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.is_unspecified or address.is_multicast:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return None  # fe80::1%eth0: a zone means nothing to another host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _url(scheme: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{host}:{port}"


def member_urls(
    scheme: str,
    found: Iterable[tuple[str, int]],
    *,
    limit: int,
    grpc: bool = False,
) -> tuple[list[str], int, int]:
    """The member URLs of the ``(address, port)`` pairs a lookup found.

    Args:
        scheme: this node's scheme (``http`` or ``https``): every member's.
        found: the addresses and ports, untrusted.
        limit: the most URLs returned.
        grpc: the peers speak gRPC (for :func:`~shoal.membership.check_member_url`).

    Returns:
        The URLs (sorted, without repeats, at most ``limit``), how many pairs were
        not usable (not a unicast address, port outside 1-65535), and how many
        usable URLs were left out past ``limit``.
    """
    urls: set[str] = set()
    bad = 0
    for text, port in found:
        address = _address(text)
        if address is None or not 0 < port <= 65535:
            bad += 1
            continue
        url = _url(scheme, address, port)
        try:
            check_member_url(url, grpc=grpc)
        except BadInput:
            bad += 1
            continue
        urls.add(url)
    ordered = sorted(urls)
    return ordered[:limit], bad, max(0, len(ordered) - limit)


class _Client:
    """dnspython's resolver, asked for A/AAAA and SRV records with a bounded wait."""

    def __init__(self, config: DnsConfig) -> None:
        if not _DNSPYTHON:  # pragma: no cover - depends on the installed extras
            raise MissingExtra("dnspython", "dns")
        self._timeout = config.timeout
        self._server = config.server_address()
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            try:
                resolver = dns.asyncresolver.Resolver(configure=self._server is None)
            except dns.resolver.NoResolverConfiguration as exc:
                raise LookupFailed(f"no DNS server in /etc/resolv.conf: {exc}") from None
            if self._server is not None:
                resolver.nameservers = [self._server[0]]
                resolver.port = self._server[1]
            resolver.lifetime = self._timeout
            resolver.timeout = self._timeout
            resolver.cache = None
            self._resolver = resolver
        return self._resolver

    async def _query(self, name: str, rdtype: str) -> Any:
        """The answer of one query; None when the name or the type has no records."""
        try:
            return await self._get().resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoNameservers as exc:  # SERVFAIL, REFUSED from every server
            raise LookupFailed(_first_line(exc)) from None
        except dns.exception.Timeout:
            raise LookupFailed(f"no answer within {self._timeout:g}s") from None
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"{type(exc).__name__}: {_first_line(exc)}") from None

    async def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of ``name`` (empty when it has none)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                queries = [tasks.create_task(self._query(name, t)) for t in ("A", "AAAA")]
        except BaseExceptionGroup as group:
            raise _first(group) from None
        answers = [query.result() for query in queries]
        return [rdata.address for answer in answers if answer is not None for rdata in answer]

    async def srv(self, name: str, limit: int) -> tuple[list[tuple[str, int]], int, int]:
        """The ``(address, port)`` of every SRV record of ``name`` whose target resolves.

        Args:
            name: the ``_service._proto.name``.
            limit: the most records whose targets are resolved: the first in
                ``(target, port)`` order, the same on every node whatever order the
                server sent them in.

        Returns:
            The pairs; how many records were not usable (a target of ".", a port of
            0, a target with no address); how many were left out past ``limit``.
        """
        answer = await self._query(name, "SRV")
        if answer is None:
            return [], 0, 0
        usable: set[tuple[str, int]] = set()
        bad = 0
        for rdata in answer:  # a message is at most 64 KiB: a few thousand records
            target = rdata.target.to_text(omit_final_dot=True)
            if target in ("", ".") or not 0 < rdata.port <= 65535:
                bad += 1
                continue
            usable.add((target.lower(), int(rdata.port)))
        records = sorted(usable)[:limit]
        left_out = len(usable) - len(records)
        # The addresses the server sent along (glue), then lookups for the rest.
        known: dict[str, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                owner = rrset.name.to_text(omit_final_dot=True).lower()
                known.setdefault(owner, []).extend(r.address for r in rrset)
        missing = sorted({target for target, _ in records if target not in known})
        limiter = asyncio.Semaphore(MAX_SRV_TARGETS)

        async def resolve(target: str) -> None:
            async with limiter:
                known[target] = await self.addresses(target)

        try:
            async with asyncio.TaskGroup() as tasks:
                for target in missing:
                    tasks.create_task(resolve(target))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        found: list[tuple[str, int]] = []
        for target, port in records:
            addresses = known.get(target, [])
            if not addresses:
                bad += 1
            found.extend((address, port) for address in addresses)
        return found, bad, left_out


async def _system_addresses(name: str) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``name`` (empty when it has none)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_NAME:
            return []
        raise LookupFailed(f"getaddrinfo: {exc.strerror or exc}") from None
    except OSError as exc:
        raise LookupFailed(f"getaddrinfo: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DnsMembership:
    """Members found in DNS, looked up again every ``config.interval``.

    Args:
        config: the name (A/AAAA or SRV), the server, the interval and the bounds.
        node_id: this node's id.
        url: this node's URL on the ring: its scheme and port are every A/AAAA
            member's, its host one of this node's own addresses.
        host: the address this node's peer server listens on (another of its own).
        grpc: the peers speak gRPC.
        started_at: when this process started (Unix seconds; default now).

    Raises:
        MissingExtra: SRV or a DNS server without dnspython (``shoal[dns]``).
    """

    source = "dns"

    def __init__(
        self,
        config: DnsConfig,
        *,
        node_id: str,
        url: str,
        host: str | None = None,
        grpc: bool = False,
        started_at: float | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.url = url
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._url_host = parts.hostname or ""
        self._host = host
        self._grpc = grpc
        self._started_at = started_at if started_at is not None else time.time()
        self._client = _Client(config) if config.srv or config.server else None
        self._own: set[str] = set()
        self._self = Member(
            node_id=node_id,
            url=url,
            source=self.source,
            grpc=default_node_id(url) if grpc else None,
            started_at=self._started_at,
        )
        self._channel = SnapshotChannel([self._self])
        self._state = "starting"
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._closed = False
        self._stats = {
            "lookups": 0,
            "failures": 0,
            "empty": 0,
            "changes": 0,
            "bad_records": 0,
            "left_out": 0,
        }

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> MemberSet:
        """Learn this node's own addresses, then look the members up once.

        Never raises for a lookup that fails: the view is then this node alone and
        :meth:`run` looks again every interval.
        """
        await self._own_addresses()
        await self._round()
        return self._channel.current

    async def run(self) -> None:
        """Look the members up every interval until cancelled."""
        while True:
            await asyncio.sleep(self.config.interval)
            await self._round()

    def snapshots(self) -> AsyncIterator[MemberSet]:
        """The members found, then each change."""
        return self._channel.snapshots()

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """URL order: every node finds the same members, in any order."""
        return sorted(urls)

    @property
    def has_view(self) -> bool:
        """True once a lookup found members (kept when later lookups fail)."""
        return self._last_success is not None

    def statistics(self) -> dict[str, Any]:
        """What is looked up, where, the state of the last lookup and counters.

        ``state`` is ``ok`` (the last lookup found members), ``failing`` (it got no
        answer: the last members found are kept), ``empty`` (it found no record:
        kept too) or ``starting``.
        """
        age = None if self._last_success is None else time.monotonic() - self._last_success
        return {
            "source": self.source,
            "name": self.config.query,
            "type": self.config.record_type,
            "server": self.config.server or "system",
            "interval": self.config.interval,
            "state": self._state,
            "last_error": self._last_error,
            "last_success_age": None if age is None else round(age, 3),
            "members": len(self._channel.current),
            **self._stats,
        }

    async def aclose(self) -> None:
        """Stop looking (nothing to deregister: the records belong to DNS). Idempotent."""
        self._closed = True

    # -- lookups ---------------------------------------------------------------

    async def _own_addresses(self) -> None:
        """The addresses that are this node: its URL's host, its bind address, and
        what its URL's host resolves to when it is a name."""
        for text in (self._url_host, self._host):
            address = _address(text) if text else None
            if address is not None:
                self._own.add(str(address))
        if self._url_host and _address(self._url_host) is None:
            try:
                async with asyncio.timeout(self.config.timeout):
                    if self._client is not None:
                        found = await self._client.addresses(self._url_host)
                    else:
                        found = await _system_addresses(self._url_host)
            except (TimeoutError, LookupFailed) as exc:
                log.warning(
                    "could not resolve this node's own host %r (%s); its records in DNS "
                    "are recognised by address only",
                    self._url_host,
                    exc,
                )
                found = []
            for text in found:
                address = _address(text)
                if address is not None:
                    self._own.add(str(address))

    async def _lookup(self) -> tuple[list[tuple[str, int]], int, int]:
        """The ``(address, port)`` pairs the name has now, the unusable records, and the
        SRV records left out past ``max_members``."""
        cfg = self.config
        if cfg.srv is not None:
            assert self._client is not None
            return await self._client.srv(cfg.query, cfg.max_members)
        if self._client is not None:
            addresses = await self._client.addresses(cfg.query)
        else:
            addresses = await _system_addresses(cfg.query)
        return [(address, self._port) for address in addresses], 0, 0

    async def _round(self) -> None:
        """One lookup: publish what it found, or keep the last members found."""
        self._stats["lookups"] += 1
        try:
            async with asyncio.timeout(self.config.timeout):
                found, bad, skipped = await self._lookup()
        except TimeoutError:
            self._failed("failing", f"no answer within {self.config.timeout:g}s")
            return
        except LookupFailed as exc:
            self._failed("failing", str(exc))
            return
        except Exception as exc:  # a resolver bug or an answer it choked on: still a failure
            self._failed("failing", f"{type(exc).__name__}: {_first_line(exc)}")
            return
        urls, unusable, left_out = member_urls(
            self._scheme, found, limit=self.config.max_members, grpc=self._grpc
        )
        self._stats["bad_records"] += bad + unusable
        left_out += skipped
        self._stats["left_out"] += left_out
        if left_out and self._state != "ok":
            log.warning(
                "DNS %s has more than %d members; the first %d in URL order are taken",
                self.config.query,
                self.config.max_members,
                self.config.max_members,
            )
        if not urls:
            self._failed("empty", f"no usable {self.config.record_type} record")
            return
        if self._state in ("failing", "empty"):
            log.info("DNS %s answers again: %d members", self.config.query, len(urls))
        self._state = "ok"
        self._last_error = None
        self._last_success = time.monotonic()
        if self._channel.publish(self._members(urls)):
            self._stats["changes"] += 1

    def _members(self, urls: Sequence[str]) -> list[Member]:
        """The members at ``urls``; the one at an address of this node's own is this node."""
        members = [self._self]
        for url in urls:
            parts = urlsplit(url)
            if parts.port == self._port and (parts.hostname or "") in self._own:
                continue  # this node, already listed under its own URL and id
            if url == self.url:
                continue
            members.append(
                Member(
                    node_id=default_node_id(url),
                    url=url,
                    source=self.source,
                    grpc=default_node_id(url) if self._grpc else None,
                )
            )
        return members

    def _failed(self, state: str, error: str) -> None:
        """A lookup that found no member: keep the last ones, warn once per streak."""
        self._stats["failures" if state == "failing" else "empty"] += 1
        streak = self._state in ("failing", "empty")
        self._state = state
        self._last_error = error
        kept = len(self._channel.current)
        level = logging.DEBUG if streak else logging.WARNING
        log.log(
            level,
            "DNS lookup of %s (%s via %s) found no member: %s; keeping the last %d "
            "member%s and trying again every %gs",
            self.config.query,
            self.config.record_type,
            self.config.server or "the system's resolver",
            error,
            kept,
            "" if kept == 1 else "s",
            self.config.interval,
        )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error inside ``group`` (a cancellation stays the group it came in)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, Exception) else group


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
