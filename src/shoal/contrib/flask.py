"""shoal in Flask apps: an extension that gives every worker process a client.

One shoal node runs per host (``shoal serve``); each worker of ``gunicorn -w N``
talks to it through a :class:`shoal.SyncClient` (blocking, on keep-alive
sockets in the calling thread). No worker binds a port, so the workers share
one cache::

    from flask import Flask
    from shoal.contrib.flask import Shoal

    app = Flask(__name__)
    app.config["SHOAL_SEEDS"] = "http://127.0.0.1:9999"   # the node on this host
    shoal = Shoal(app)

    @app.get("/pages/<slug>")
    def page(slug: str) -> bytes:
        return shoal.client.get("pages", slug)

The client is made on first use in each process, so an app built before
gunicorn forks (``--preload``) still gives each worker its own connections;
the client is fork-safe as well (see :mod:`shoal.sync_client`). It is closed
when the process exits (or by :meth:`Shoal.close`).

Settings (``app.config``): ``SHOAL_SEEDS`` (a URL or a list; default
``http://127.0.0.1:9999``), ``SHOAL_TIMEOUT`` (seconds, default 5),
``SHOAL_TOKEN`` (an API token, default none), ``SHOAL_NEAR_CACHE`` (``True`` or a
:class:`shoal.NearCache`: keep recent hits in each worker, dropped when the node
says the key changed; default none). Nothing here imports Flask.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from ..errors import Closed
from ..sync_client import SyncClient

__all__ = ["DEFAULT_SEEDS", "Shoal"]

DEFAULT_SEEDS = "http://127.0.0.1:9999"
"""The node a Flask app talks to unless ``SHOAL_SEEDS`` says otherwise."""


class Shoal:
    """The Flask extension: ``Shoal(app)``, or ``Shoal()`` then :meth:`init_app`.

    Args:
        app: the Flask app (or None, for the app factory pattern).
        options: passed to :class:`shoal.SyncClient`, over the app's settings.
    """

    def __init__(self, app: Any = None, **options: Any) -> None:
        self._options = options
        self._seeds: list[str] | None = None
        self._client: SyncClient | None = None
        self._pid = 0
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Read the app's ``SHOAL_*`` settings and register as ``app.extensions["shoal"]``.

        Raises:
            ConfigError: a bad seed or option (now, not at the first request).
        """
        seeds = app.config.get("SHOAL_SEEDS", DEFAULT_SEEDS)
        self._seeds = [seeds] if isinstance(seeds, str) else list(seeds)
        options: dict[str, Any] = {}
        if "SHOAL_TIMEOUT" in app.config:
            options["timeout"] = app.config["SHOAL_TIMEOUT"]
        if app.config.get("SHOAL_TOKEN") is not None:
            options["token"] = app.config["SHOAL_TOKEN"]
        if app.config.get("SHOAL_NEAR_CACHE"):
            options["near_cache"] = app.config["SHOAL_NEAR_CACHE"]
        self._options = {**options, **self._options}
        SyncClient(self._seeds, **self._options).close()  # check the settings at once
        app.extensions["shoal"] = self

    @property
    def client(self) -> SyncClient:
        """This process's client, started on first use (after a fork: a new one).

        Raises:
            Closed: :meth:`init_app` was not called.
            PeerUnavailable: the node does not answer.
        """
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                if self._seeds is None:
                    raise Closed("Shoal has no app: call init_app(app) first")
                fresh = SyncClient(self._seeds, **self._options)
                fresh.start()
                if self._client is None:
                    atexit.register(self.close)
                self._client, self._pid = fresh, os.getpid()
            return self._client

    def close(self) -> None:
        """Close this process's client (the next use opens a new one). Idempotent."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
