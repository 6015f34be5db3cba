"""etcd membership: a leased key per node, a watch on the cluster's prefix.

Each node puts ``{prefix}/{cluster}/members/{node_id}`` → JSON ``{node_id, url,
grpc, started_at}`` under a lease of ``lease_ttl`` seconds and refreshes the
lease itself every ``keepalive_interval`` (one request per refresh, each with
a deadline). It reads the prefix once and then watches it; every change
publishes a new snapshot. A killed node vanishes when its lease runs out; a
stopped node revokes its lease, which deletes its key at once.

When etcd cannot be reached the node keeps its last view and says so in the
log; it retries every ``retry_interval`` with a fresh connection, then checks
its lease (still alive: the key stays; expired: a new lease and the key
again), reads the whole prefix again and watches *from the revision of that
read*, so no change made meanwhile is missed, and a history compacted while
the node was away (``RevisionCompactedError``) cannot stop it: the read is the
state, the watch only what follows. A watch that reports a compaction is
answered the same way: read the prefix, watch from its revision. A node id is
the key, so a member can never be listed twice.

Records are untrusted input: one larger than :data:`MAX_RECORD_BYTES`, nested
deeper than :data:`MAX_RECORD_DEPTH`, not a JSON object, or with a field of the
wrong type (``url`` not a string, ``started_at`` not a finite number, ``grpc``
neither a string nor null, a key that is not a valid node id) is skipped and
logged when read; it never stops the others from being applied. Whether
the URL itself is usable is the node's check (:func:`~shoal.membership.check_member_url`).

With ``https://`` endpoints the connection is TLS: etcd's certificate is checked
against ``ca`` (or the system's CAs) and ``cert``/``key`` are presented as a client
certificate. With ``user`` the node authenticates with the password in the first
line of ``password_file`` and sends the token etcd gives with every request; when
etcd expires the token (``--auth-token-ttl``, a restart) the node authenticates
again and repeats the request. The files are read at start (a missing or empty
one is a :class:`~shoal.errors.ConfigError` naming the file, never the password),
again at each reconnection and on :meth:`EtcdMembership.reload` (``SIGHUP``); a
file that fails then keeps the old credentials. A refusal that does not mend
itself (a wrong password, a role without permission on the prefix, a certificate
etcd or the node rejects) is logged as one line that says what to fix and raised
from :meth:`EtcdMembership.run`, so the node counts it as a background error of
``membership`` and retries after a growing pause.

The client is ``aetcd`` (extra ``shoal[etcd]``); its errors are caught here and
never reach the rest of shoal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..config import EtcdConfig, check_node_id, is_loopback
from ..errors import ConfigError, MembershipError, MissingExtra
from . import MAX_URL_LENGTH, BadInput, Member, MemberSet, SnapshotChannel, load_json

try:
    import aetcd
    import grpc
    from aetcd import rpc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("aetcd", "etcd") from exc

__all__ = ["EtcdMembership", "MAX_RECORD_BYTES", "MAX_RECORD_DEPTH"]

log = logging.getLogger("shoal.membership")

MAX_RECORD_BYTES: Final = 4096
"""The largest member record read (a record is four short fields: ~200 bytes)."""

MAX_RECORD_DEPTH: Final = 2
"""The deepest nesting of arrays and objects in a record (it is one flat object)."""

MAX_SECRET_FILE_BYTES: Final = 1 << 20
"""The largest password, CA, certificate or key file read (1 MiB)."""

# Reconnect fast when etcd comes back: gRPC's default back-off grows to 120 s.
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
}


class EtcdRefused(MembershipError):
    """etcd refused this node for a reason that retrying alone will not mend: the
    message says what to fix (it never holds the password)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a connection to etcd presents, as read from the configured files."""

    channel: grpc.ChannelCredentials | None
    """TLS credentials (CA, client certificate), or None for plain ``http://``."""

    password: str | None = None
    """The user's password, or None without ``user``."""

    def __repr__(self) -> str:  # never print the password
        hidden = "***" if self.password else None
        return f"Credentials(tls={self.channel is not None}, password={hidden})"


def _read_file(path: str, what: str) -> bytes:
    """The bytes of ``path``; a :class:`ConfigError` naming the file (and never its
    content) when it cannot be read, is empty or is too large."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"the {what} {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    if not data.strip():
        raise ConfigError(f"the {what} {path} is empty")
    return data


def read_password(path: str) -> str:
    """The first line of ``path``, stripped: an etcd password.

    Raises:
        ConfigError: the file is missing, unreadable, empty, not UTF-8 or its first
            line is blank; the message names the file, never its content.
    """
    data = _read_file(path, "etcd password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the etcd password file {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise ConfigError(f"the etcd password file {path} has an empty first line")
    return password


def _read_certificates(path: str, what: str) -> bytes:
    """A PEM file of one or more certificates, checked to parse."""
    from cryptography import x509

    data = _read_file(path, what)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"the {what} {path} holds no PEM certificate") from None
    return data


def _read_key(path: str, cert: bytes) -> bytes:
    """A PEM private key, checked to parse and to match the certificate ``cert``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = _read_file(path, "etcd client key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"the etcd client key {path} holds no unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.PEM
    if key.public_key().public_bytes(encoding, public) != x509.load_pem_x509_certificates(cert)[
        0
    ].public_key().public_bytes(encoding, public):
        raise ConfigError(f"the etcd client key {path} does not belong to the client certificate")
    return data


def read_credentials(config: EtcdConfig) -> Credentials:
    """Read the CA, client certificate, key and password files ``config`` names.

    Raises:
        ConfigError: a file is missing, unreadable, empty or not what it should be;
            the message names the file and never holds the password.
    """
    channel = None
    if config.tls:
        ca = None if config.ca is None else _read_certificates(config.ca, "etcd CA file")
        cert = key = None
        if config.cert is not None and config.key is not None:
            cert = _read_certificates(config.cert, "etcd client certificate")
            key = _read_key(config.key, cert)
        channel = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
    password = None if config.password_file is None else read_password(config.password_file)
    return Credentials(channel, password)


class _Client(aetcd.Client):  # type: ignore[misc]  # aetcd has no type information
    """aetcd's client over TLS (aetcd 1.0 speaks plain gRPC only), with a token that
    :meth:`authenticate` renews in place: every stub call and the watcher share the
    one metadata list.

    :meth:`connect` sets the attributes aetcd 1.0.0's own ``connect`` sets (the stubs,
    ``metadata``, ``_watcher``, ``_connected``): the extra pins that version.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        options: dict[str, Any],
        credentials: Credentials,
        user: str | None,
    ) -> None:
        super().__init__(host=host, port=port, timeout=timeout, options=options)
        self._target = f"{host}:{port}"
        self._channel_options = list(options.items())
        self._request_timeout = timeout
        self._credentials = credentials
        self.user = user
        self._token: list[tuple[str, str]] = []
        self._ready = False

    async def connect(self) -> None:
        """Open the channel (TLS with credentials) and authenticate, once."""
        if self._ready:
            return
        creds = self._credentials.channel
        if creds is not None:
            self.channel = grpc.aio.secure_channel(
                self._target, creds, options=self._channel_options
            )
        else:
            self.channel = grpc.aio.insecure_channel(self._target, options=self._channel_options)
        self.metadata = None
        if self.user is not None:
            self.metadata = self._token
            await self.authenticate()
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.Watcher(
            rpc.WatchStub(self.channel), timeout=self._request_timeout, metadata=self.metadata
        )
        self._connected.set()
        self._ready = True

    async def authenticate(self) -> None:
        """Ask etcd for a token with the user's password; later calls send it."""
        assert self.user is not None
        assert self._credentials.password is not None
        try:
            reply = await rpc.AuthStub(self.channel).Authenticate(
                rpc.AuthenticateRequest(name=self.user, password=self._credentials.password),
                timeout=self._request_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise aetcd.ClientError(exc.details() or exc.code().name) from exc
        self._token[:] = [("token", reply.token)]

    async def close(self) -> None:
        """Close the channel (and the watcher)."""
        self._ready = False
        await super().close()


class EtcdMembership:
    """Members registered in etcd under the cluster's prefix.

    Args:
        config: endpoints, cluster name, lease TTL and timings.
        node_id: this node's id (the last segment of its key).
        url: this node's URL on the ring.
        grpc: this node's gRPC address, if it serves one.
        started_at: when this process started (Unix seconds; default now).
    """

    source = "etcd"

    def __init__(
        self,
        config: EtcdConfig,
        *,
        node_id: str,
        url: str,
        grpc: str | None = None,
        started_at: float | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.url = url
        self.key = f"{config.members_prefix}{node_id}".encode()
        """This node's key."""
        self._prefix = config.members_prefix.encode()
        self._value = json.dumps(
            {
                "node_id": node_id,
                "url": url,
                "grpc": grpc,
                "started_at": started_at if started_at is not None else time.time(),
            },
            separators=(",", ":"),
        ).encode()
        self._client: Any = None
        self._endpoint = 0
        self._lease: int | None = None
        self._members: dict[str, Member] = {}
        self._revision = 0
        self._loaded = False
        """Every event up to this revision is applied (0: the prefix was never read)."""
        self._channel = SnapshotChannel()
        self._connected = False
        self._closed = False
        self._stats = {
            "connects": 0,
            "registrations": 0,
            "events": 0,
            "failures": 0,
            "rereads": 0,
            "bad_records": 0,
        }
        self._last_error: str | None = None
        self._credentials = read_credentials(config)
        self._stats["reauthentications"] = 0
        exposed = [
            url
            for url in config.endpoints
            if not is_loopback(config.address(url)[0]) and not config.tls
        ]
        if config.user is not None and exposed:
            log.warning(
                "the etcd password goes in the clear to %s: use https:// endpoints",
                ", ".join(exposed),
            )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> MemberSet:
        """Register and read the members; if etcd does not answer, start alone.

        Never raises for an unreachable or refusing etcd: the node then serves alone
        and :meth:`run` keeps trying.
        """
        try:
            async with asyncio.timeout(3 * self.config.timeout):
                await self._establish()
        except Exception as exc:
            refusal = self._refusal(exc)
            self._failed(
                exc,
                f"{refusal}; serving with this node alone until etcd lets it in"
                if refusal
                else "etcd is unreachable; serving with this node alone until it answers",
            )
            await self._drop_client()
        return self._channel.current

    async def run(self) -> None:
        """Keep the lease alive and follow the watch; reconnect whenever etcd fails.

        Raises:
            EtcdRefused: etcd refused the node's credentials, permissions or
                certificate (logged first); the caller counts it and calls again
                after a pause.
        """
        while True:
            try:
                if self._client is None:
                    async with asyncio.timeout(3 * self.config.timeout):
                        await self._establish()
                await self._follow()
            except Exception as exc:
                was = self._connected
                refusal = self._refusal(exc)
                self._failed(
                    exc,
                    refusal
                    or (
                        "lost etcd; serving with the last view and retrying"
                        if was
                        else "etcd is still unreachable; retrying"
                    ),
                )
                await self._drop_client()
                if refusal is not None:
                    raise EtcdRefused(refusal) from None
                await asyncio.sleep(self.config.retry_interval)

    def reload(self) -> None:
        """Read the CA, client certificate, key and password files again (``SIGHUP``);
        the next connection uses them, the open one keeps its own.

        Raises:
            ConfigError: a file failed to load; the old credentials stay in use.
        """
        self._credentials = read_credentials(self.config)

    def snapshots(self) -> AsyncIterator[MemberSet]:
        """The registered members, then each change."""
        return self._channel.snapshots()

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """URL order: every node discovers the same members, in any order."""
        return sorted(urls)

    @property
    def has_view(self) -> bool:
        """True once the members were read from etcd (kept when etcd goes away later)."""
        return self._loaded

    def statistics(self) -> dict[str, Any]:
        """Connection state, lease, revision and counters."""
        host, port = self.config.address(self.config.endpoints[self._endpoint])
        return {
            "source": self.source,
            "cluster": self.config.cluster,
            "endpoint": f"{host}:{port}",
            "key": self.key.decode(),
            "connected": self._connected,
            "lease": self._lease,
            "lease_ttl": self.config.lease_ttl,
            "revision": self._revision,
            "tls": self.config.tls,
            "user": self.config.user,
            "last_error": self._last_error,
            **self._stats,
        }

    async def aclose(self) -> None:
        """Revoke the lease (deleting the key at once), then close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self._lease is not None:
            try:
                async with asyncio.timeout(self.config.timeout):
                    await self._call("revoke_lease", self._lease)
                log.info("deregistered from etcd (%s)", self.key.decode())
            except Exception as exc:
                log.warning(
                    "could not deregister from etcd (%s); the key expires with its lease in %ds",
                    _describe(exc),
                    self.config.lease_ttl,
                )
        await self._drop_client()

    # -- one connection --------------------------------------------------------

    async def _establish(self) -> None:
        """Connect, make sure this node is registered, and catch up with the prefix."""
        host, port = self.config.address(self.config.endpoints[self._endpoint])
        try:  # certificates or a password may have been replaced meanwhile
            self._credentials = read_credentials(self.config)
        except ConfigError as exc:
            log.warning("%s; connecting with the credentials read before", exc)
        self._client = _Client(
            host,
            port,
            timeout=self.config.timeout,
            options=_CHANNEL_OPTIONS,
            credentials=self._credentials,
            user=self.config.user,
        )
        await self._client.connect()
        await self._register()
        # Always read again: what changed while away, whatever etcd compacted meanwhile.
        await self._load()
        self._stats["connects"] += 1
        if self._last_error is not None:
            log.info("etcd answers again (%s:%d); registered as %s", host, port, self.key.decode())
        else:
            log.info(
                "registered in etcd (%s:%d) as %s, lease TTL %ds",
                host,
                port,
                self.key.decode(),
                self.config.lease_ttl,
            )
        self._connected = True
        self._last_error = None

    async def _register(self) -> None:
        """Put this node's key under a live lease (the old one if it survived)."""
        if self._lease is not None:
            reply = await self._call("refresh_lease", self._lease)
            if reply is None or reply.TTL <= 0:
                log.info("the etcd lease expired; registering again")
                self._lease = None
        if self._lease is None:
            lease = await self._call("lease", self.config.lease_ttl)
            self._lease = int(lease.id)
            self._stats["registrations"] += 1
        # Also after a surviving lease: the key may have been deleted by hand.
        await self._call("put", self.key, self._value, lease=self._lease)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.method(*args, **kwargs)``; when etcd says the auth token expired,
        authenticate again and repeat it once."""
        client = self._client
        try:
            return await getattr(client, method)(*args, **kwargs)
        except aetcd.ClientError as exc:
            if client.user is None or "invalid auth token" not in str(exc):
                raise
        log.info("the etcd auth token of user %r expired; authenticating again", client.user)
        self._stats["reauthentications"] += 1
        await client.authenticate()
        return await getattr(client, method)(*args, **kwargs)

    async def _load(self) -> None:
        """Read every member under the prefix."""
        result = await self._call("get_prefix", self._prefix)
        members = {}
        for kv in result:
            member = self._parse(kv.key, kv.value)
            if member is not None:
                members[member.node_id] = member
        self._members = members
        self._revision = int(result.header.revision)
        self._loaded = True
        self._publish()

    async def _follow(self) -> None:
        """Watch the prefix from the last revision and keep the lease alive, until
        either fails."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._keep_alive())
            tasks.create_task(self._watch())

    async def _watch(self) -> None:
        """Apply the watch's events; after a compaction, read the prefix and watch again."""
        while True:
            try:
                watch = await self._call(
                    "watch_prefix", self._prefix, start_revision=self._revision + 1
                )
            except aetcd.RevisionCompactedError as exc:
                await self._reread(exc)
                continue
            try:
                await self._apply_events(watch)
            except aetcd.RevisionCompactedError as exc:
                await self._reread(exc)
            finally:
                with contextlib.suppress(Exception):
                    await watch.cancel()

    async def _reread(self, exc: aetcd.RevisionCompactedError) -> None:
        """The history after our revision is gone: read the whole prefix again."""
        log.info(
            "etcd compacted its history up to revision %s, past %d; reading the members again",
            exc.compacted_revision,
            self._revision,
        )
        self._stats["rereads"] += 1
        await self._load()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval)
            async with asyncio.timeout(self.config.timeout):
                reply = await self._call("refresh_lease", self._lease)
            if reply is None or reply.TTL <= 0:
                # etcd was away longer than the TTL: the key is gone.
                log.warning("the etcd lease expired; registering again")
                self._lease = None
                async with asyncio.timeout(self.config.timeout):
                    await self._register()

    async def _apply_events(self, watch: Any) -> None:
        async for event in watch:
            kv = event.kv
            node_id = self._node_id(kv.key)
            if node_id is None:
                continue
            member = self._parse(kv.key, kv.value) if event.kind == "PUT" else None
            if member is not None:
                self._members[node_id] = member
            else:  # deleted, or overwritten by a record that is not a member
                self._members.pop(node_id, None)
            self._revision = max(self._revision, int(kv.mod_revision))
            self._stats["events"] += 1
            self._publish()
        raise MembershipError("the etcd watch ended")

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.timeout):
                    await client.close()

    # -- helpers ---------------------------------------------------------------

    def _failed(self, exc: BaseException, what: str) -> None:
        self._stats["failures"] += 1
        # Warn once per outage; the retries that follow are debug noise.
        level = logging.WARNING if self._last_error is None else logging.DEBUG
        self._last_error = _describe(exc)
        log.log(level, "%s (%s)", what, self._last_error)
        if len(self.config.endpoints) > 1:
            self._endpoint = (self._endpoint + 1) % len(self.config.endpoints)

    def _refusal(self, exc: BaseException) -> str | None:
        """What to fix, when ``exc`` is etcd (or TLS) refusing this node rather than
        etcd being away; None for an outage."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if not isinstance(exc, aetcd.ClientError):
            return None
        text = str(exc)
        cfg = self.config
        if "authentication failed" in text:
            return (
                f"etcd refused user {cfg.user!r}: wrong user name or password "
                f"(--etcd-user, --etcd-password-file {cfg.password_file})"
            )
        if "permission denied" in text:
            who = f"user {cfg.user!r}" if cfg.user else "this node (no --etcd-user)"
            return (
                f"etcd denied {who} access to {cfg.members_prefix}: grant its role "
                f"readwrite on the prefix {cfg.prefix}/"
            )
        if "user name is empty" in text or "user name not found" in text:
            return (
                "etcd has auth enabled: give --etcd-user and --etcd-password-file (or "
                "a client certificate whose common name is an etcd user)"
            )
        if "CERTIFICATE_VERIFY_FAILED" in text:
            ca = cfg.ca or "the system's CAs"
            return (
                f"etcd's server certificate is not trusted: it does not verify against {ca} "
                "(--etcd-ca)"
            )
        if (
            "BAD_CERTIFICATE" in text
            or "TSI_DATA_CORRUPTED" in text
            or "CERTIFICATE_REQUIRED" in text
        ):
            given = f"{cfg.cert} was" if cfg.cert else "none was given"
            return (
                "etcd rejected this node's client certificate "
                f"({given}; --etcd-cert, --etcd-key): etcd wants one signed by its "
                "trusted CA"
            )
        if "WRONG_VERSION_NUMBER" in text:
            return "etcd does not speak TLS at that endpoint: use an http:// URL there"
        return None

    def _publish(self) -> None:
        self._channel.publish(self._members.values())

    def _node_id(self, key: bytes) -> str | None:
        if not key.startswith(self._prefix):
            return None
        node_id = key[len(self._prefix) :].decode("utf-8", "replace")
        return node_id or None

    def _parse(self, key: bytes, value: bytes) -> Member | None:
        """The member a record describes; None (logged) for a record that is not one."""
        try:
            return self._member(key, value)
        except (BadInput, ConfigError) as exc:
            self._stats["bad_records"] += 1
            name = key.decode(errors="replace")[:200]
            log.warning("ignoring the malformed etcd member %r: %s", name, exc)
            return None

    def _member(self, key: bytes, value: bytes) -> Member | None:
        node_id = self._node_id(key)
        if node_id is None:
            return None
        check_node_id(node_id)
        doc = load_json(value, max_bytes=MAX_RECORD_BYTES, max_depth=MAX_RECORD_DEPTH)
        if not isinstance(doc, dict):
            raise BadInput(f"a record is a JSON object, got {type(doc).__name__}")
        url = doc.get("url")
        if not isinstance(url, str) or not url:
            raise BadInput(f"'url' must be a non-empty string, got {_short(url)}")
        grpc = doc.get("grpc")
        if grpc is not None and (not isinstance(grpc, str) or len(grpc) > MAX_URL_LENGTH):
            raise BadInput(f"'grpc' must be a short string or null, got {_short(grpc)}")
        started = doc.get("started_at")
        started_at = None if started is None else _seconds(started)
        if started_at is not None and not math.isfinite(started_at):
            raise BadInput(f"'started_at' must be a number, got {_short(started)}")
        return Member(
            node_id=node_id, url=url, source=self.source, grpc=grpc, started_at=started_at
        )


def _seconds(value: object) -> float:
    """``value`` as a float; NaN for anything but a number a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _short(value: object) -> str:
    """``repr(value)``, cut for the log."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _describe(exc: BaseException) -> str:
    """One line for the log: the first real error inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
