"""The live dashboard of a node: ``GET /ui`` on the API port.

The page is static HTML, CSS and plain JavaScript shipped in the package
(``shoal/api/ui/``): no CDN, no build step. It draws what the node already
serves as JSON, polling ``/v1/cluster`` (members, their health and source, the
ring's shares, and the owner of a key with ``?key=K``) and ``/v1/stats`` (the
groups' counters).

=========================  ========================================================
``GET|HEAD /ui``            the page (also ``/ui/``)
``GET|HEAD /ui/<asset>``    its script, style sheet and icon
``GET|HEAD /ui/config``     ``{"tokens": true|false}``: whether the page must ask
                            for a token before it asks for data
=========================  ========================================================

These routes need no token: they carry no data. With API tokens the page asks
for one (an ``admin`` token shows everything; below ``admin``, ``/v1/cluster``
leaves out the members' source and the membership state) and sends it as
``Authorization: Bearer`` from the script; it keeps it in the tab's
``sessionStorage`` only.

Every answer carries strict headers: a ``Content-Security-Policy`` of
``default-src 'self'`` (no inline script or style, nothing from elsewhere, no
framing), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Final

from .._http import Response, json_response

__all__ = ["ASSETS", "SECURITY_HEADERS", "UI_PATHS", "dashboard_response"]

CSP: Final = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
"""The page's Content-Security-Policy: its own origin only, no inline code."""

SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)
"""The headers of every ``/ui`` answer."""

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _load_assets() -> dict[bytes, tuple[bytes, str]]:
    """The files of ``shoal/api/ui``, read once: ``{path: (body, content type)}``."""
    folder = resources.files(__package__ or "shoal.api").joinpath("ui")
    assets: dict[bytes, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix in _TYPES and entry.is_file():
            assets[f"/ui/{name}".encode()] = (entry.read_bytes(), _TYPES[suffix])
    page = assets[b"/ui/index.html"]
    assets[b"/ui"] = assets[b"/ui/"] = page
    return assets


ASSETS: Final[Mapping[bytes, tuple[bytes, str]]] = _load_assets()
"""Each asset path and its (body, content type)."""

_CONFIG: Final = b"/ui/config"

UI_PATHS: Final = frozenset({*ASSETS, _CONFIG})
"""Every path of the dashboard: none of them needs a token."""


def dashboard_response(method: str, path: bytes, *, tokens: bool) -> Response:
    """The answer to ``method path`` for one of :data:`UI_PATHS`.

    Args:
        method: the request's method: ``GET`` and ``HEAD`` are answered, anything
            else gets a 405.
        path: the request's path, one of :data:`UI_PATHS`.
        tokens: whether the node has API tokens (what ``/ui/config`` tells the page).
    """
    if method not in ("GET", "HEAD"):
        return json_response(
            {
                "error": f"method {method} is not allowed here; use GET, HEAD",
                "code": "method_not_allowed",
            },
            405,
            headers=(("Allow", "GET, HEAD"), *SECURITY_HEADERS),
        )
    if path == _CONFIG:
        return json_response({"tokens": tokens}, headers=SECURITY_HEADERS)
    body, content_type = ASSETS[path]
    return Response(200, body, content_type, SECURITY_HEADERS)
