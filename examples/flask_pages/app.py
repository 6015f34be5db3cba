"""Pages cached by shoal, served by Flask under ``gunicorn -w N`` (with or without ``--preload``).

The shoal node of this host runs the loader (here a ``sql:`` loader; any loader
a node can run will do); every gunicorn worker holds a :class:`shoal.SyncClient`
to it through the :class:`~shoal.contrib.flask.Shoal` extension. A ``PUT``
stores the new page in the cache, and the next request on any worker of any
host reads it. See docs/flask.md and README.md beside this file.

Settings (environment): ``SHOAL_NODE`` (this host's node, default
``http://127.0.0.1:9999``), ``SHOAL_NEAR_CACHE=1`` (a near cache in each worker).
"""

from __future__ import annotations

import os

from flask import Flask, Response, abort, request

import shoal
from shoal.contrib.flask import Shoal

app = Flask(__name__)
app.config["SHOAL_SEEDS"] = os.environ.get("SHOAL_NODE", "http://127.0.0.1:9999")
app.config["SHOAL_NEAR_CACHE"] = os.environ.get("SHOAL_NEAR_CACHE") == "1"
cache = Shoal(app)


@app.get("/pages/<slug>")
def get_page(slug: str) -> Response:
    """The page, from the cache (its owner loads it on a miss)."""
    try:
        body = cache.client.get("pages", slug)
    except shoal.NotFound:
        abort(404)
    return Response(body, mimetype="text/plain", headers={"X-Worker": str(os.getpid())})


@app.put("/pages/<slug>")
def put_page(slug: str) -> Response:
    """Store the page in the cache, at its owner: every worker reads it next."""
    cache.client.set("pages", slug, request.get_data())
    return Response(status=204, headers={"X-Worker": str(os.getpid())})
