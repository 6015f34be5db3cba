def simple_get(data: bytes, limit: int, /) -> bytes | None:
    """The request target of ``data`` if it is exactly one simple keep-alive
    HTTP/1.1 GET of at most ``limit`` bytes, else None."""
