"""A real DNS server on loopback whose records a test changes while nodes look them up.

dnslib's ``DNSServer`` answers UDP queries on 127.0.0.1 (port 0: a free port the
kernel picks) from a thread of its own; :class:`Zone` holds the records it answers
from. A test sets a name's A/AAAA addresses or SRV records, removes them, or makes
the server fail (SERVFAIL, or no answer at all); every change applies to the next
query. The server is stopped and its thread joined when the block ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSError, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

__all__ = ["Zone", "dns_server"]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


@dataclass
class Zone:
    """The records the server answers from (thread-safe: the server reads them from its
    own thread)."""

    addresses: dict[str, list[str]] = field(default_factory=dict)
    srv: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    glue: bool = True
    """Put the SRV targets' addresses in the additional section."""
    mode: str = "answer"
    """``answer``; ``servfail`` (every query answered SERVFAIL); ``silent`` (none answered)."""
    queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_addresses(self, name: str, addresses: Sequence[str]) -> None:
        """Make ``addresses`` the A and AAAA records of ``name`` (empty: none)."""
        with self.lock:
            self.addresses[_key(name)] = list(addresses)

    def set_srv(self, name: str, records: Sequence[tuple[str, int]]) -> None:
        """Make ``records`` (target, port) the SRV records of ``name``."""
        with self.lock:
            self.srv[_key(name)] = list(records)

    def set_mode(self, mode: str) -> None:
        """Answer (``answer``), fail every query (``servfail``) or answer none (``silent``)."""
        assert mode in ("answer", "servfail", "silent")
        with self.lock:
            self.mode = mode

    def _address_records(self, name: str) -> list[RR]:
        records = []
        for address in self.addresses.get(_key(name), []):
            kind, rdata = (QTYPE.AAAA, AAAA(address)) if ":" in address else (QTYPE.A, A(address))
            records.append(RR(DNSLabel(name), kind, rdata=rdata, ttl=0))
        return records

    def answer(self, request: Any) -> Any:
        """The reply to one query; None to send nothing."""
        with self.lock:
            self.queries += 1
            if self.mode == "silent":
                return None
            reply = request.reply()
            if self.mode == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            qname = str(request.q.qname)
            qtype = QTYPE[request.q.qtype]
            key = _key(qname)
            if key not in self.addresses and key not in self.srv:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            if qtype in ("A", "AAAA"):
                for record in self._address_records(qname):
                    if QTYPE[record.rtype] == qtype:
                        reply.add_answer(record)
            elif qtype == "SRV":
                for target, port in self.srv.get(key, []):
                    rdata = SRV(priority=10, weight=10, port=port, target=target)
                    reply.add_answer(RR(DNSLabel(qname), QTYPE.SRV, rdata=rdata, ttl=0))
                    if self.glue:
                        for record in self._address_records(target):
                            reply.add_ar(record)
            return reply


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = self.zone.answer(request)
        if reply is None:  # silent: the server's handler drops a query that raised this
            raise DNSError("not answering")
        return reply


@dataclass
class LoopbackDns:
    """A running DNS server: its zone and its ``host:port``."""

    zone: Zone
    port: int

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``--dns-server`` takes it."""
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def dns_server() -> Iterator[LoopbackDns]:
    """Run a DNS server on 127.0.0.1 (UDP, a free port) until the block ends."""
    zone = Zone()
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(_Resolver(zone), address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        yield LoopbackDns(zone, server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()
        server.thread.join(5)
