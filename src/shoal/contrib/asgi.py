"""shoal in ASGI apps (FastAPI, Starlette): a lifespan that gives every worker a client.

One shoal node runs per host (``shoal serve``); each worker process of
``uvicorn --workers N`` (or gunicorn's uvicorn workers) opens a
:class:`shoal.Client` to it when the app starts and closes it when the app
stops. No worker binds a port of its own, so the workers share one cache and a
write through any of them is what every other one reads next::

    from fastapi import FastAPI, Request
    from shoal.contrib.asgi import ShoalLifespan, client

    app = FastAPI(lifespan=ShoalLifespan("http://127.0.0.1:9999"))

    @app.get("/pages/{slug}")
    async def page(slug: str, request: Request) -> str:
        return (await client(request).get("pages", slug)).decode()

The lifespan yields the state ``{"shoal": client}`` (Starlette copies it into
``request.state``); :func:`client` reads it back. To run a lifespan of one's
own as well, enter this one inside it: ``async with shoal_lifespan(app) as
state: ...``. The client is made in the worker, after any fork, so nothing is
shared between processes. Nothing here imports Starlette: any ASGI framework
with lifespan state works.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..client import Client
from ..errors import Closed

__all__ = ["STATE_KEY", "ShoalLifespan", "client"]

STATE_KEY = "shoal"
"""The name of the client in the lifespan state (``request.state.shoal``)."""


class ShoalLifespan:
    """An ASGI lifespan (``FastAPI(lifespan=...)``) that opens a :class:`shoal.Client`.

    Args:
        seeds: the node on this host (``http://127.0.0.1:9999``), or several
            members; the client learns the rest of the cluster from them.
        state_key: the client's name in the lifespan state. Default ``"shoal"``.
        options: passed to :class:`shoal.Client` (``timeout``, ``token``, ``tls``, …).

    Raises:
        ConfigError: a bad seed or option (at once, not when the app starts).
    """

    def __init__(
        self, seeds: str | Iterable[str], *, state_key: str = STATE_KEY, **options: Any
    ) -> None:
        self._seeds = [seeds] if isinstance(seeds, str) else list(seeds)
        self._state_key = state_key
        self._options = options
        # Built and dropped here so a bad seed fails at import, where it is written.
        Client(self._seeds, **options)
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """This worker's client, while the app runs.

        Raises:
            Closed: the app has not started (or has stopped).
        """
        if self._client is None:
            raise Closed("the shoal client is open only while the app runs (its lifespan)")
        return self._client

    @contextlib.asynccontextmanager
    async def __call__(self, app: object) -> AsyncIterator[dict[str, Any]]:
        """Open the client, yield the lifespan state, close the client."""
        async with Client(self._seeds, **self._options) as shoal:
            self._client = shoal
            try:
                yield {self._state_key: shoal}
            finally:
                self._client = None


def client(request: Any, state_key: str = STATE_KEY) -> Client:
    """The :class:`shoal.Client` of the request's app (from the lifespan state).

    Usable as a FastAPI dependency: ``shoal: Client = Depends(client)``.

    Raises:
        Closed: the app was not started with a :class:`ShoalLifespan`.
    """
    found = getattr(request.state, state_key, None)
    if not isinstance(found, Client):
        raise Closed(f"no shoal client in the lifespan state {state_key!r}: use ShoalLifespan")
    return found
