"""Sealed gossip: what AES-GCM sealing costs per datagram, against the work a node does
on every datagram anyway (encoding and decoding the JSON message).

Two datagrams, as a node sends them: a bare ``ping`` (the most frequent, ~70 bytes)
and a ``gossip`` message packed with member updates up to ``max_packet`` (1400) less
the envelope's 37 bytes. Per round, with the garbage collector off and the order
rotating, each operation runs over 2,000 datagrams:

* **encode** / **decode**: :func:`messages.encode` and :func:`messages.decode`, the
  plain path;
* **seal**: :meth:`Sealer.seal` with a 32-byte (AES-256) primary key;
* **open**: :meth:`Sealer.open` of datagrams sealed beforehand, each opened once, by a
  receiver with two installed keys whose *second* one opens them (the worst case
  during a rotation: one failed tag check first), replay check included.

The table gives ns per datagram (median over rounds) and the ratios, taken per round:
send = (encode + seal) / encode, receive = (open + decode) / decode. No target: the
figures say what a keyring costs; a wrong round trip exits 1.

Run: ``python bench/gossip_sealing.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Sequence

from _common import BenchError, environment, markdown_table, median, run
from shoal.membership.gossip.keyring import OVERHEAD, Keyring, Sealer
from shoal.membership.gossip.messages import Gossip, Message, Ping, Update, decode, encode

BATCH = 2_000
MAX_PACKET = 1400
NOW = 1_800_000_000.0


def messages() -> dict[str, Message]:
    """A bare ping, and a gossip message as full as a sealed datagram may be."""
    updates: list[Update] = []
    full = Gossip("127.0.0.1:7001", ())
    for i in range(128):
        update = Update(
            "alive",
            f"10.0.{i // 250}.{i % 250}:7001",
            i,
            (f"10.0.{i // 250}.{i % 250}", 7001),
            (("started_at", "1800000000.5"), ("url", f"http://10.0.{i // 250}.{i % 250}:7000")),
        )
        candidate = Gossip("127.0.0.1:7001", (*updates, update))
        if len(encode(candidate)) > MAX_PACKET - OVERHEAD:
            break
        updates.append(update)
        full = candidate
    return {"ping": Ping(12345, "127.0.0.1:7001", "127.0.0.2:7001"), "gossip (full)": full}


def timed(operation: Callable[[], object]) -> float:
    """ns per datagram of ``operation`` (which handles BATCH datagrams)."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        operation()
        return (time.perf_counter_ns() - start) / BATCH
    finally:
        gc.enable()


def round_of(message: Message) -> dict[str, float]:
    """One round of the four operations on ``message``, in a rotating order."""
    data = encode(message)
    primary, other = os.urandom(32), os.urandom(32)
    sender = Sealer(Keyring([primary]), cluster="default", window=30.0)
    receiver = Sealer(Keyring([other, primary]), cluster="default", window=30.0)
    sealed = [sender.seal(data, NOW) for _ in range(BATCH)]
    if receiver.open(sealed[0], NOW) != data or decode(data) != message:
        raise BenchError("a sealed datagram did not open to the message")
    sealed = [*sealed[1:], sender.seal(data, NOW)]
    operations: dict[str, Callable[[], object]] = {
        "encode": lambda: [encode(message) for _ in range(BATCH)],
        "decode": lambda: [decode(data) for _ in range(BATCH)],
        "seal": lambda: [sender.seal(data, NOW) for _ in range(BATCH)],
        "open": lambda: [receiver.open(d, NOW) for d in sealed],
    }
    return {name: timed(op) for name, op in operations.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 30")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 30
    rows = []
    for name, message in messages().items():
        samples: list[dict[str, float]] = [round_of(message) for _ in range(rounds)]
        ns = {op: median([s[op] for s in samples]) for op in samples[0]}
        send = median([(s["encode"] + s["seal"]) / s["encode"] for s in samples])
        receive = median([(s["open"] + s["decode"]) / s["decode"] for s in samples])
        size = len(encode(message))
        rows.append(
            [
                name,
                f"{size} -> {size + OVERHEAD}",
                *(f"{ns[op]:,.0f}" for op in ("encode", "seal", "decode", "open")),
                f"{send:.2f}x",
                f"{receive:.2f}x",
            ]
        )
    print(
        markdown_table(
            [
                "datagram",
                "bytes (plain -> sealed)",
                "encode ns",
                "seal ns",
                "decode ns",
                "open ns",
                "send sealed / plain",
                "receive sealed / plain",
            ],
            rows,
        )
    )
    print(f"\n{rounds} rounds of {BATCH} datagrams; {environment()}")
    return 0


if __name__ == "__main__":
    run(main)
