"""Pages from PostgreSQL, cached by shoal, served by FastAPI under ``uvicorn --workers N``.

The shoal node of this host runs the loader (a ``sql:`` loader on the ``pages``
table); the workers only hold a client to it. A miss anywhere in the cluster is
one query, by the key's owner; a ``PUT`` writes the row, then the cache, and the
next request on any worker of any host reads the new page. See
docs/fastapi.md for the deployment and README.md beside this file to run it.

Settings (environment): ``SHOAL_NODE`` (this host's node, default
``http://127.0.0.1:9999``), ``DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), ``PAGES_TABLE`` (default ``pages``),
``SHOAL_NEAR_CACHE=1`` (a near cache in each worker).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request, Response

import shoal
from shoal.contrib.asgi import ShoalLifespan, client

NODE = os.environ.get("SHOAL_NODE", "http://127.0.0.1:9999")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLE = os.environ.get("PAGES_TABLE", "pages")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", TABLE):
    raise SystemExit(f"PAGES_TABLE must be a plain table name, not {TABLE!r}")

shoal_lifespan = ShoalLifespan(NODE, near_cache=os.environ.get("SHOAL_NEAR_CACHE") == "1")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Per worker: a shoal client (to the node) and a small pool for the writes."""
    async with (
        shoal_lifespan(app) as state,
        asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=2) as db,
    ):
        yield {**state, "db": db}


app = FastAPI(lifespan=lifespan)


@app.get("/pages/{slug}")
async def get_page(slug: str, request: Request) -> Response:
    """The page, from the cache (its owner queries PostgreSQL on a miss)."""
    try:
        body = await client(request).get("pages", slug)
    except shoal.NotFound:
        raise HTTPException(404, f"no page {slug!r}") from None
    return Response(body, media_type="text/plain", headers={"X-Worker": str(os.getpid())})


@app.put("/pages/{slug}", status_code=204)
async def put_page(slug: str, request: Request) -> Response:
    """Write the page to PostgreSQL, then to the cache (its owner, for every worker)."""
    body = await request.body()
    await request.state.db.execute(
        f"INSERT INTO {TABLE} (slug, body) VALUES ($1, $2) "
        "ON CONFLICT (slug) DO UPDATE SET body = EXCLUDED.body",
        slug,
        body.decode(),
    )
    await client(request).set("pages", slug, body)
    return Response(status_code=204, headers={"X-Worker": str(os.getpid())})
