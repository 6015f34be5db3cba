"""The HTTP API of a node: the client-facing routes (DESIGN §7).

=======================================================  ==========================================
``GET|HEAD /api?key=K[&group=G]``                        the value's bytes (``group`` may be left
                                                         out when the node has exactly one group)
``GET|HEAD /v1/groups/{group}/keys/{key}``               the value's bytes
``PUT /v1/groups/{group}/keys/{key}[?ttl=seconds]``      store the body as the value; 204
``DELETE /v1/groups/{group}/keys/{key}``                 drop the key; ``{"deleted": true|false}``
``POST /v1/groups/{group}/invalidate``                   drop every key of the group on every
                                                         member; ``{"removed": n}`` (this node's)
``GET /v1/stats``                                        ``{"groups": {name: statistics},
                                                         "background_errors": {task: n},
                                                         "loader_threads": {counter: n},
                                                         "accept_errors": {server: n}}``
``GET /healthz``                                         ``ok``
``GET /metrics``                                         Prometheus text format 0.0.4
``GET /ui``                                              the live dashboard (see
                                                         :mod:`shoal.api.dashboard`)
=======================================================  ==========================================

With API tokens (``NodeConfig.api_tokens``, :mod:`shoal.tokens`) every route
but ``/healthz`` (and ``/readyz``, and the dashboard's static assets) needs
``Authorization: Bearer TOKEN`` of a role that allows it: ``read`` for every
``GET``/``HEAD`` (values, statistics, the cluster view, metrics, and any unknown
path), ``write`` for ``PUT`` and
``DELETE`` of a key, ``admin`` for invalidating a group and for the cluster's
internals (below ``admin``, ``/v1/cluster`` answers the routing view a client
needs: the ring and the members' URLs and shares, see :func:`routing_view`). No token or an unknown
one gets a 401 with ``WWW-Authenticate: Bearer realm="shoal"`` (and
``error="invalid_token"`` when a token was given), a header that is not ``Bearer
TOKEN`` (or two of them) a 400 with ``error="invalid_request"``, a role that
does not allow the request a 403 with ``error="insufficient_scope"`` (RFC 6750);
each is counted in ``shoal_auth_failures_total{port="api",reason}``. The check
comes before anything else, so a refused request learns nothing about paths,
groups or keys.

Errors are JSON ``{"error": message, "code": code}``; a shoal error answers with
its own ``http_status`` and ``code``, any other loader failure with 502
``load_failed``.

Paths are matched on the raw request target and decoded here, strictly: a path
segment is percent-decoded (``%2F`` is a ``/`` inside a key, ``+`` stays ``+``),
a query is decoded with ``+`` as a space; a malformed escape or bytes that are
not UTF-8 get a 400. Every check on the input happens before a cache is
touched, so a bad request never changes cache state.

A hit is answered synchronously (no task, no coroutine); a miss returns a
:class:`~shoal._http.Deferred` on the key's flight, which the server answers
from a callback within ``request_timeout`` (no task per miss either); a write
returns a coroutine, which the server runs as a task. The most frequent
requests, ``GET /api?key=K`` and ``GET /v1/groups/{group}/keys/{key}`` with
nothing to unescape, take a shortcut (:meth:`ApiServer.fast_get`) that answers
a hit with the value's bytes before the server builds a request object; it
hands anything else back to the general path, and answers what it does handle
exactly as the general path would. With tokens the server takes the shortcut
only for a request whose token it has verified (see
:class:`~shoal._http.FastGuard`): every role may read, so what the shortcut
answers needs no further check.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._changes import Changes
from .._http import (
    OCTET_STREAM,
    SHUTDOWN_TIMEOUT,
    Deferred,
    Handler,
    HttpLimits,
    HttpServer,
    Request,
    Response,
    ServerFront,
    error_response,
    json_response,
)
from ..errors import ShoalError, ValueTooLarge
from ..statuses import LOAD_FAILED
from ..tokens import ApiTokens, role_allows
from ..wire import percent_decode
from .dashboard import UI_PATHS, dashboard_response
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import render_metrics

if TYPE_CHECKING:
    from ..serving import ServedGroup, ServedNode

__all__ = ["ApiServer", "parse_query", "parse_key_path", "parse_ttl", "required_role"]

_READ: Final = frozenset({"GET", "HEAD"})
_KEY_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_ALLOW_READ: Final = "GET, HEAD"
_ALLOW_KEY: Final = "GET, HEAD, PUT, DELETE"
_KEYS_PREFIX: Final = b"/v1/groups/"
_INVALIDATE: Final = b"/invalidate"
_QUERY_SPECIALS: Final = re.compile(rb"[%+&]")
# ApiServer.fast_get takes "/api?key=K" and "/v1/groups/{g}/keys/{k}" targets
# and leaves to the general path: in the query, anything that needs unescaping
# or splitting (or a fragment); in a key path, an escape, a query or a fragment.
_FAST_API_PREFIX: Final = b"/api?key="
_FAST_API_KEY_AT: Final = len(_FAST_API_PREFIX)
_GROUP_AT: Final = len(_KEYS_PREFIX)
_NOT_FAST_QUERY: Final = re.compile(rb"[%+&#]")
_NOT_FAST_PATH: Final = re.compile(rb"[%?#]")
# Routes without a token (the dashboard's assets carry no data), and the role each
# other exact path needs (see required_role).
_OPEN: Final = frozenset({b"/healthz", b"/readyz", *UI_PATHS})
_PATH_ROLES: Final = {
    b"/api": "read",
    b"/v1/stats": "read",
    b"/v1/cluster": "read",
    b"/v1/invalidations": "read",
    b"/metrics": "read",
}
_AUTHORIZATION: Final = b"authorization"
_REALM: Final = 'Bearer realm="shoal"'
# Each refusal: status, code, message, WWW-Authenticate (RFC 6750 §3).
_REFUSALS: Final = {
    "missing": (
        401,
        "unauthorized",
        "this node needs an API token: Authorization: Bearer TOKEN",
        _REALM,
    ),
    "unknown": (
        401,
        "unauthorized",
        "the API token is not valid",
        _REALM + ', error="invalid_token"',
    ),
    "malformed": (
        400,
        "bad_authorization",
        "the Authorization header must be one 'Bearer TOKEN'",
        _REALM + ', error="invalid_request"',
    ),
    "forbidden": (
        403,
        "forbidden",
        "the API token's role does not allow this request",
        _REALM + ', error="insufficient_scope"',
    ),
}
# A plain decimal number: float() alone would also take "nan", "1_000" and " 5 ".
_NUMBER: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# -- pure parsing ---------------------------------------------------------------


def parse_query(raw: bytes) -> dict[str, list[str]]:
    """Parse a raw query string into ``{name: [values in order]}``.

    ``&`` separates fields, ``+`` is a space, a field without ``=`` has the value
    ``""`` and empty fields are skipped (the rules of ``urllib.parse.parse_qs``
    with ``keep_blank_values=True``, but strict).

    Raises:
        ValueError: a malformed percent-escape or invalid UTF-8 in a name or value.
    """
    params: dict[str, list[str]] = {}
    if not raw:
        return params
    for field in raw.split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        params.setdefault(percent_decode(name, "query", plus_is_space=True), []).append(
            percent_decode(value, "query", plus_is_space=True)
        )
    return params


def parse_key_path(path: bytes) -> tuple[str, str] | None:
    """Split a raw ``/v1/groups/{group}/keys/{key}`` path into decoded (group, key).

    Each of ``group`` and ``key`` is one path segment: a raw ``/`` inside the key
    means another shape of path, but ``%2F`` decodes to a ``/`` in the key.

    Returns:
        (group, key), or None when the path does not have this shape.

    Raises:
        ValueError: a malformed percent-escape or invalid UTF-8 in either segment.
    """
    if not path.startswith(_KEYS_PREFIX):
        return None
    group, slash, rest = path[len(_KEYS_PREFIX) :].partition(b"/")
    if not slash or not rest.startswith(b"keys/"):
        return None
    key = rest[5:]
    if b"/" in key:
        return None
    return percent_decode(group, "group of the path"), percent_decode(key, "key of the path")


def parse_ttl(text: str) -> float:
    """Parse a TTL in seconds: a plain decimal number, positive and finite.

    Raises:
        ValueError: anything else (``0``, ``-1``, ``inf``, ``nan``, ``1e999``, ``abc``).
    """
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"ttl must be a number of seconds, got {text[:64]!r}")
    ttl = float(text)
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be positive and finite, got {text[:64]!r}")
    return ttl


def _single(params: dict[str, list[str]], name: str) -> str | None:
    """The one value of query parameter ``name``, None if absent; ValueError if repeated."""
    values = params.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise ValueError(f"the query parameter {name!r} is given more than once")
    return values[0]


def required_role(method: str, path: bytes) -> str | None:
    """The role a request needs when the node has API tokens; None for the open
    routes (``/healthz``, ``/readyz``). Unknown paths and methods need ``read``, so
    that only a token holder learns which paths exist."""
    if path in _OPEN:
        return None
    role = _PATH_ROLES.get(path)
    if role is not None:
        return role
    if path.startswith(_KEYS_PREFIX):
        if path.endswith(_INVALIDATE) and path.count(b"/") == 4:
            return "admin"
        return "read" if method in _READ else "write"
    return "read"


# What a client needs to route a key (shoal.Client): every role may read it. The
# rest of /v1/cluster (membership state and counters, node ids, the peer clients'
# counters, the peer address) is the cluster's internals, for admin tokens only.
_ROUTING_KEYS: Final = ("self", "base_path", "transport", "ring", "owner")
_ROUTING_MEMBER_KEYS: Final = ("url", "self", "share", "backing_off")


def routing_view(info: Mapping[str, Any]) -> dict[str, Any]:
    """``/v1/cluster`` as a token below ``admin`` sees it: the ring and the members'
    URLs and shares, without the cluster's internals."""
    view = {key: info[key] for key in _ROUTING_KEYS if key in info}
    view["members"] = [
        {key: member[key] for key in _ROUTING_MEMBER_KEYS if key in member}
        for member in info.get("members", ())
    ]
    return view


def _authorization(request: Request) -> bytes | None:
    """The request's one ``Authorization`` value; b"" (malformed) when it has several."""
    value: bytes | None = None
    for name, field in request.headers:
        if len(name) == 13 and name.lower() == _AUTHORIZATION:
            if value is not None:
                return b""
            value = field
    return value


def _refusal(reason: str) -> Response:
    status, code, message, challenge = _REFUSALS[reason]
    return error_response(status, code, message, headers=(("WWW-Authenticate", challenge),))


# -- answers --------------------------------------------------------------------


def _shoal_error(exc: ShoalError) -> Response:
    """The API's answer for a shoal error: its own status and code (the API column of
    :data:`shoal.statuses.STATUSES`; a wire error carries the status its input earned)."""
    return error_response(exc.http_status, exc.code, str(exc))


def _bad_request(exc: ValueError) -> Response:
    return error_response(400, "bad_request", str(exc))


def _not_allowed(request: Request, allow: str) -> Response:
    return error_response(
        405,
        "method_not_allowed",
        f"method {request.method} is not allowed here; use {allow}",
        headers=(("Allow", allow),),
    )


_HEALTHY: Final = Response(200, b"ok")


def _loaded(future: asyncio.Future[bytes]) -> Response:
    """The answer to a miss once its load is done."""
    exc = future.exception()
    if exc is None:
        return Response(200, future.result(), OCTET_STREAM)
    if isinstance(exc, ShoalError):
        return _shoal_error(exc)
    # The loader's own exception: the origin behind this node failed.
    return error_response(LOAD_FAILED.api, LOAD_FAILED.code, str(exc) or type(exc).__name__)


class ApiServer(ServerFront):
    """The HTTP API server of one node (see the module docstring for the routes).

    The node starts it when ``NodeConfig.api_port`` is set; limits and timeouts
    come from the node's :class:`~shoal.config.NodeConfig`.

    Args:
        node: the node whose groups are served.
        shutdown_timeout: seconds :meth:`aclose` lets in-flight requests finish.
        fast_path: answer plain GETs through :meth:`fast_get`; False sends every
            request through :meth:`handle` (the answers are the same: tests
            compare the two).
        tokens: the node's API tokens: every request but ``/healthz`` then needs
            one (see the module docstring). Default None: no tokens.
        tls: the current TLS server context, asked at each connection (see
            :class:`shoal.tls.NodeTls`); None serves plain HTTP.
        trace: wraps the handler (a server span per request, :mod:`shoal.otel`);
            every request then goes through the handler (as ``fast_path=False``).
            Default None.
    """

    def __init__(
        self,
        node: ServedNode,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        fast_path: bool = True,
        tokens: ApiTokens | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        trace: Callable[[Handler], Handler] | None = None,
    ) -> None:
        self._node = node
        # A live read-only view: groups added or dropped later are seen.
        self._groups = node.groups
        self._tokens = tokens
        self._server = HttpServer(
            self.handle if trace is None else trace(self.handle),
            HttpLimits.of(node.config),
            fast_get=self.fast_get if fast_path and trace is None else None,
            fast_guard=tokens,
            shutdown_timeout=shutdown_timeout,
            tls=tls,
        )
        # A reload of the tokens: every connection checks its token again.
        self._unsubscribe = (
            tokens.on_change(self._server.forget_credentials) if tokens is not None else None
        )
        self._routes: dict[bytes, Callable[[Request], Response | Awaitable[Response]]] = {
            b"/api": self._api,
            b"/v1/stats": self._stats,
            b"/v1/cluster": self._cluster,
            b"/v1/invalidations": self._invalidations,
            b"/healthz": self._healthz,
            b"/metrics": self._metrics,
        }
        for path in UI_PATHS:
            self._routes[path] = self._ui

    async def aclose(self) -> None:
        """Stop listening (and following token reloads), finish in-flight requests
        briefly, then drop the rest."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._node.changes.close()  # the long polls answer now
        await super().aclose()

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Answer one request: a ready :class:`Response` for anything that needs no
        waiting (hits, errors, statistics), a :class:`~shoal._http.Deferred` on the
        key's flight for a miss, a coroutine for a write."""
        tokens = self._tokens
        if tokens is not None:
            needed = required_role(request.method, request.path)
            if needed is not None:
                refused = tokens.check(_authorization(request), needed, port="api")
                if refused is not None:
                    return _refusal(refused)
        try:
            route = self._routes.get(request.path)
            if route is not None:
                return route(request)
            if request.path.startswith(_KEYS_PREFIX):
                return self._key(request)
            return error_response(
                404, "unknown_path", f"no such path: {request.path[:128].decode('latin-1')}"
            )
        except ShoalError as exc:  # GroupNotFound, InvalidKey, KeyTooLarge, NotFound, ...
            return _shoal_error(exc)

    def fast_get(self, target: bytes) -> bytes | Response | Awaitable[Response] | None:
        """The shortcut for ``GET /api?key=K`` and ``GET /v1/groups/{g}/keys/{k}``.

        Called by the server with the raw target of a GET that can be answered
        at once (see :data:`shoal._http.FastGet`). Returns the value's bytes
        on a hit, the answer :meth:`handle` would give once the cache has been
        consulted (an error, or the Deferred answer of a miss), or None, before
        touching anything, for whatever the general path must look at: a
        target with escapes, ``+``, several parameters or a fragment, a node
        without exactly one group (``/api``), an unknown group, a key that
        fails validation.
        """
        if target.startswith(_FAST_API_PREFIX):
            raw_key = target[_FAST_API_KEY_AT:]
            # Most keys are letters and digits: a cheaper test than the pattern.
            if not raw_key.isalnum() and _NOT_FAST_QUERY.search(raw_key):
                return None
            groups = self._groups
            if len(groups) != 1:
                return None
            (group,) = groups.values()
        elif target.startswith(_KEYS_PREFIX):
            # The shape parse_key_path accepts, with nothing to unescape.
            if _NOT_FAST_PATH.search(target, _GROUP_AT):
                return None
            raw_group, slash, rest = target[_GROUP_AT:].partition(b"/")
            if not slash or not rest.startswith(b"keys/") or b"/" in rest[5:]:
                return None
            try:
                found = self._groups.get(raw_group.decode("utf-8"))
            except UnicodeDecodeError:
                return None
            if found is None:
                return None
            group, raw_key = found, rest[5:]
        else:
            return None
        try:
            key = raw_key.decode("utf-8")
            group.validate_key(key)
        except (UnicodeDecodeError, ShoalError):
            return None  # the general path gives the 400 (and the same for a bad key)
        # From here on as _get does (tests compare the two paths byte for byte).
        try:
            data = group.serve_cached(key)
        except ShoalError as exc:  # NotFound: a cached miss
            return _shoal_error(exc)
        return data if data is not None else self._load(group, key)

    # -- routes ------------------------------------------------------------------

    def _api(self, request: Request) -> Response | Awaitable[Response]:
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        query = request.query
        key: str | None
        group_name: str | None
        try:
            if query.startswith(b"key=") and not _QUERY_SPECIALS.search(query, 4):
                # The common "?key=K" with nothing to unescape: skip the general parser.
                key, group_name = query[4:].decode("utf-8"), None
            else:
                params = parse_query(query)
                key = _single(params, "key")
                group_name = _single(params, "group")
        except UnicodeDecodeError:
            return _bad_request(ValueError("the query is not valid UTF-8"))
        except ValueError as exc:
            return _bad_request(exc)
        if key is None:
            return error_response(400, "missing_key", "the query parameter 'key' is required")
        if group_name is not None:
            group = self._node.get_group(group_name)
        else:
            groups = self._node.groups
            if len(groups) != 1:
                return error_response(
                    400,
                    "missing_group",
                    f"this node has {len(groups)} groups; name one with the 'group' parameter",
                )
            (group,) = groups.values()
        return self._get(group, key)

    def _key(self, request: Request) -> Response | Awaitable[Response]:
        path = request.path
        if path.endswith(_INVALIDATE) and path.count(b"/") == 4:
            return self._invalidate(request, path[len(_KEYS_PREFIX) : -len(_INVALIDATE)])
        try:
            target = parse_key_path(path)
        except ValueError as exc:
            return _bad_request(exc)
        if target is None:
            return error_response(
                404,
                "unknown_path",
                "expected /v1/groups/{group}/keys/{key} or /v1/groups/{group}/invalidate",
            )
        method = request.method
        if method not in _KEY_METHODS:
            return _not_allowed(request, _ALLOW_KEY)
        group_name, key = target
        group = self._node.get_group(group_name)
        if method in _READ:
            return self._get(group, key)
        group.validate_key(key)
        if method == "DELETE":
            return self._delete(group, key)
        try:
            ttl_text = _single(parse_query(request.query), "ttl")
            ttl = None if ttl_text is None else parse_ttl(ttl_text)
        except ValueError as exc:
            return _bad_request(exc)
        body = request.body
        limit = group.config.max_value_bytes
        if len(body) > limit:  # refused here, before a task is even created
            raise ValueTooLarge(f"value of {len(body)} bytes exceeds max_value_bytes={limit}")
        return self._put(group, key, body, ttl)

    def _invalidate(self, request: Request, raw_group: bytes) -> Response | Awaitable[Response]:
        if request.method != "POST":
            return _not_allowed(request, "POST")
        try:
            name = percent_decode(raw_group, "group of the path")
        except ValueError as exc:
            return _bad_request(exc)
        return self._reset(self._node.get_group(name))

    async def _reset(self, group: ServedGroup) -> Response:
        try:
            removed = await group.invalidate_group()
        except ShoalError as exc:
            return _shoal_error(exc)
        return json_response({"removed": removed})

    def _stats(self, request: Request) -> Response:
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        groups = self._node.groups
        return json_response(
            {
                "groups": {name: group.statistics().as_dict() for name, group in groups.items()},
                "background_errors": self._node.background_errors(),
                "loader_threads": self._node.loader_statistics(),
                "accept_errors": self._node.accept_errors(),
            }
        )

    def _cluster(self, request: Request) -> Response:
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        try:
            key = _single(parse_query(request.query), "key")
        except UnicodeDecodeError:
            return _bad_request(ValueError("the query is not valid UTF-8"))
        except ValueError as exc:
            return _bad_request(exc)
        if key == "":
            return error_response(400, "invalid_key", "the key is empty")
        info = self._node.cluster_info(key)
        tokens = self._tokens
        if tokens is not None:
            role = tokens.identify(_authorization(request)).role
            if role is None or not role_allows(role, "admin"):
                info = routing_view(info)
        return json_response(info)

    def _invalidations(self, request: Request) -> Response | Awaitable[Response]:
        """``GET /v1/invalidations?since=N&epoch=E&groups=a,b&wait=S``: the keys changed
        on this node after change ``N`` (a long poll: waits up to ``wait`` seconds,
        default 20, for one), as ``{"epoch", "seq", "flush", "keys": [[group, key|null]]}``;
        ``flush`` true: changes were lost (a first call, another epoch, or too far
        behind), drop every near-cached key. See docs/workers.md."""
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        try:
            params = parse_query(request.query)
            since_text = _single(params, "since")
            epoch = _single(params, "epoch")
            groups_text = _single(params, "groups")
            wait_text = _single(params, "wait")
            since = int(since_text) if since_text is not None else -1
            wait = float(wait_text) if wait_text is not None else 20.0
        except UnicodeDecodeError:
            return _bad_request(ValueError("the query is not valid UTF-8"))
        except ValueError as exc:
            return _bad_request(exc)
        # Below the request timeout, so a quiet poll ends with an answer, not a 503.
        limit = self._node.config.request_timeout / 2
        if not (0 <= wait <= 3600) or since < -1:
            return _bad_request(ValueError("wait is 0-3600 seconds, since a change number"))
        groups = frozenset(groups_text.split(",")) if groups_text else None
        changes = self._node.changes
        if since < 0 or wait == 0 or epoch != changes.epoch or since != changes.seq:
            return _changes_response(changes.since(since, epoch, groups))
        return self._wait_changes(since, epoch, groups, min(wait, limit))

    async def _wait_changes(
        self, since: int, epoch: str | None, groups: frozenset[str] | None, wait: float
    ) -> Response:
        return _changes_response(await self._node.changes.wait(since, epoch, groups, wait))

    def _healthz(self, request: Request) -> Response:
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        return _HEALTHY

    def _ui(self, request: Request) -> Response:
        return dashboard_response(request.method, request.path, tokens=self._tokens is not None)

    def _metrics(self, request: Request) -> Response:
        if request.method not in _READ:
            return _not_allowed(request, _ALLOW_READ)
        groups = self._node.groups.values()
        membership = self._node.membership
        body = render_metrics(
            (g.statistics() for g in groups),
            self._node.peer_statistics(),
            membership=membership.statistics() if membership is not None else None,
            background_errors=self._node.background_errors(),
            loader_threads=self._node.loader_statistics(),
            accept_errors=self._node.accept_errors(),
            auth_failures=self._tokens.failures() if self._tokens is not None else None,
            tls_handshake_failures=self._node.tls_handshake_failures(),
        )
        return Response(200, body, METRICS_CONTENT_TYPE)

    # -- the cache ----------------------------------------------------------------

    def _get(self, group: ServedGroup, key: str) -> Response | Awaitable[Response]:
        # fast_get does the same for the requests it takes: keep the two in step.
        group.validate_key(key)
        data = group.serve_cached(key)  # raises NotFound for a cached miss
        if data is not None:
            return Response(200, data, OCTET_STREAM)
        return self._load(group, key)

    def _load(self, group: ServedGroup, key: str) -> Deferred | Response:
        # The key's flight, answered from a callback: no task per miss. serve_load_future,
        # not get: serve_cached has counted this get already.
        try:
            return Deferred(group.serve_load_future(key), _loaded)
        except ShoalError as exc:  # the group is closed
            return _shoal_error(exc)

    async def _put(self, group: ServedGroup, key: str, body: bytes, ttl: float | None) -> Response:
        try:
            await group.set_bytes(key, body, ttl)
        except ShoalError as exc:
            return _shoal_error(exc)
        return Response(204)

    async def _delete(self, group: ServedGroup, key: str) -> Response:
        try:
            deleted = await group.delete(key)
        except ShoalError as exc:
            return _shoal_error(exc)
        return json_response({"deleted": deleted})


def _changes_response(changes: Changes) -> Response:
    return json_response(
        {
            "epoch": changes.epoch,
            "seq": changes.seq,
            "flush": changes.flush,
            "keys": [list(pair) for pair in changes.keys],
        }
    )
