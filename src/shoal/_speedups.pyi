from collections.abc import Callable

def probe_owner(
    points: bytes, starts: bytes, shift: int, point: int, probes: int, mask: int, /
) -> int:
    """The index in ``points`` (sorted uint64 values, native byte order) of the ring
    point that follows one of the key's ``probes`` probes most closely; 0 for no
    points. ``starts`` (uint32) holds, for each slot of the hash space (``probe >>
    shift``) and one past the last, the index of the first point in or after it."""

def simple_get(data: bytes, limit: int, credential: bytes | None = None, /) -> bytes | None:
    """The request target of ``data`` if it is exactly one simple keep-alive
    HTTP/1.1 GET of at most ``limit`` bytes, else None. With a ``credential``
    (not None), only if the request has exactly one Authorization field and its
    value, without the spaces and tabs around it, is ``credential`` (compared in
    constant time; an empty credential matches nothing)."""

class SketchTouch:
    """W-TinyLFU's hit path, compiled (see ``shoal.policy.tinylfu``)."""

    def __init__(
        self,
        table: bytearray,
        hash_fn: Callable[[str], int],
        counts: list[int],
        reset: Callable[[], None],
        protected: dict[str, int],
        window: dict[str, int],
        promote: Callable[[str], None],
        simulate: Callable[[str, int | None], None],
        hits: list[int],
        sampling: list[int],
    ) -> None: ...
    def __call__(self, key: str, /) -> None: ...
    def increment(self, key: str, /) -> None:
        """Count one access of ``key`` (``FrequencySketch.increment``, no doorkeeper)."""
    def frequency(self, key: str, /) -> int:
        """The smallest of ``key``'s 4 counters (``FrequencySketch.frequency``)."""
