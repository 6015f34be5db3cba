"""A worker process with a near cache, driven over stdin/stdout by the near-cache tests.

``python -m helpers.near_worker SEED GROUP``; commands, one a line:

- ``get KEY``: ``client.get`` twice; answers ``VALUE HITS`` (near-cache hits so far).
- ``watch KEY``: answers ``watching``, then once the near cache no longer holds KEY,
  ``dropped UNIX_TIME`` (or ``timeout`` after 5 s).
- ``state``: answers ``ENTRIES ENABLED``.
- ``quit``: closes the client and exits.
"""

from __future__ import annotations

import sys
import time

from shoal import NearCache, SyncClient


def main() -> None:
    seed, group = sys.argv[1], sys.argv[2]
    client = SyncClient(seed, near_cache=NearCache(wait=5), backoff=0.2).start()
    near = client.near_cache
    assert near is not None
    deadline = time.monotonic() + 10
    while not near.enabled and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "get":
            value = client.get(group, arg)
            client.get(group, arg)
            print(value.decode(), near.hits, flush=True)
        elif command == "watch":
            print("watching", flush=True)
            end = time.monotonic() + 5
            while near.get(group, arg) is not None and time.monotonic() < end:
                time.sleep(0.0002)
            print(f"dropped {time.time():.6f}" if time.monotonic() < end else "timeout", flush=True)
        elif command == "state":
            print(len(near), int(near.enabled), flush=True)
        elif command == "quit":
            break
    client.close()


if __name__ == "__main__":
    main()
