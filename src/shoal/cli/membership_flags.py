"""The membership settings of ``shoal serve`` and ``shoal cluster``: etcd, gossip, node id.

Flags, ``SHOAL_*`` variables and the ``[node.etcd]`` / ``[node.gossip]`` tables of
the TOML file, with the usual precedence (flags, then environment, then file):

==================================  ==============================  ==========================
flag                                variable                        file
==================================  ==============================  ==========================
``--node-id ID``                    ``SHOAL_NODE_ID``               ``[node] node_id``
``--etcd URL[,URL...]``             ``SHOAL_ETCD``                  ``[node.etcd] endpoints``
``--cluster NAME``                  ``SHOAL_CLUSTER``               ``[node.etcd] cluster``
``--etcd-ttl SECONDS``              ``SHOAL_ETCD_TTL``              ``[node.etcd] lease_ttl``
``--gossip-port PORT``              ``SHOAL_GOSSIP_PORT``           ``[node.gossip] port``
``--join HOST:PORT[,HOST:PORT...]`` ``SHOAL_JOIN``                  ``[node.gossip] join``
``--gossip-advertise HOST:PORT``    ``SHOAL_GOSSIP_ADVERTISE``      ``[node.gossip] advertise``
``--gossip-timers lan|local``       ``SHOAL_GOSSIP_TIMERS``         ``[node.gossip] timers``
``--gossip-keyring FILE``           ``SHOAL_GOSSIP_KEYRING``        ``[node.gossip] keyring``
``--gossip-cluster NAME``           ``SHOAL_GOSSIP_CLUSTER``        ``[node.gossip] cluster``
``--gossip-accept-plain``           ``SHOAL_GOSSIP_ACCEPT_PLAIN``   ``[node.gossip] accept_plain``
``--gossip-send-plain``             ``SHOAL_GOSSIP_SEND_PLAIN``     ``[node.gossip] send_plain``
``--etcd-ca FILE``                  ``SHOAL_ETCD_CA``               ``[node.etcd] ca``
``--etcd-cert FILE``                ``SHOAL_ETCD_CERT``             ``[node.etcd] cert``
``--etcd-key FILE``                 ``SHOAL_ETCD_KEY``              ``[node.etcd] key``
``--etcd-user NAME``                ``SHOAL_ETCD_USER``             ``[node.etcd] user``
``--etcd-password-file FILE``       ``SHOAL_ETCD_PASSWORD_FILE``    ``[node.etcd] password_file``
``--dns NAME``                      ``SHOAL_DNS``                   ``[node.dns] name``
``--dns-srv _SERVICE._PROTO.NAME``  ``SHOAL_DNS_SRV``               ``[node.dns] srv``
``--dns-interval SECONDS``          ``SHOAL_DNS_INTERVAL``          ``[node.dns] interval``
``--dns-server HOST:PORT``          ``SHOAL_DNS_SERVER``            ``[node.dns] server``
==================================  ==============================  ==========================

The file tables also take every other field of :class:`~shoal.config.EtcdConfig`,
:class:`~shoal.config.GossipConfig` and :class:`~shoal.config.DnsConfig`
(``keepalive_interval``, ``probe_interval``, ``suspicion_timeout``, ``timeout``...).
etcd is on when endpoints are given; gossip when a gossip port, a join list or a
``[node.gossip]`` table is; DNS when a name or an SRV name is.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Final

from ..config import GOSSIP_PROFILES, DnsConfig, EtcdConfig, GossipConfig, check_node_id
from ..errors import ConfigError
from .common import ArgumentContainer, FlagSet, given
from .parse import (
    parse_bool,
    parse_duration,
    parse_int,
    parse_port,
    parse_str,
    split_assignment,
)

__all__ = [
    "add_membership_arguments",
    "parse_node_id",
    "parse_etcd_table",
    "parse_gossip_table",
    "parse_dns_table",
    "resolve_membership",
]

# (option key, flag, variable) of the etcd and gossip settings with a flag.
_ETCD_OPTIONS: Final = (
    ("endpoints", "--etcd", "SHOAL_ETCD"),
    ("cluster", "--cluster", "SHOAL_CLUSTER"),
    ("lease_ttl", "--etcd-ttl", "SHOAL_ETCD_TTL"),
    ("ca", "--etcd-ca", "SHOAL_ETCD_CA"),
    ("cert", "--etcd-cert", "SHOAL_ETCD_CERT"),
    ("key", "--etcd-key", "SHOAL_ETCD_KEY"),
    ("user", "--etcd-user", "SHOAL_ETCD_USER"),
    ("password_file", "--etcd-password-file", "SHOAL_ETCD_PASSWORD_FILE"),
)
_GOSSIP_OPTIONS: Final = (
    ("port", "--gossip-port", "SHOAL_GOSSIP_PORT"),
    ("join", "--join", "SHOAL_JOIN"),
    ("advertise", "--gossip-advertise", "SHOAL_GOSSIP_ADVERTISE"),
    ("timers", "--gossip-timers", "SHOAL_GOSSIP_TIMERS"),
    ("keyring", "--gossip-keyring", "SHOAL_GOSSIP_KEYRING"),
    ("cluster", "--gossip-cluster", "SHOAL_GOSSIP_CLUSTER"),
    ("accept_plain", "--gossip-accept-plain", "SHOAL_GOSSIP_ACCEPT_PLAIN"),
    ("send_plain", "--gossip-send-plain", "SHOAL_GOSSIP_SEND_PLAIN"),
)
_DNS_OPTIONS: Final = (
    ("name", "--dns", "SHOAL_DNS"),
    ("srv", "--dns-srv", "SHOAL_DNS_SRV"),
    ("interval", "--dns-interval", "SHOAL_DNS_INTERVAL"),
    ("server", "--dns-server", "SHOAL_DNS_SERVER"),
)
# The sealing settings: like the timers, they do not turn gossip on by themselves.
_SEALING_KEYS: Final = frozenset({"keyring", "cluster", "accept_plain", "send_plain"})
# Keys that have their own flag, so --etcd-option and --gossip-option do not take them.
_FLAG_KEYS: Final = frozenset(key for key, _, _ in (*_ETCD_OPTIONS, *_GOSSIP_OPTIONS))
_DNS_FLAG_KEYS: Final = frozenset(key for key, _, _ in _DNS_OPTIONS)


def add_membership_arguments(
    parser: argparse.ArgumentParser, flags: FlagSet, *, cluster: bool
) -> None:
    """Add the membership flags to ``serve`` (or, with ``cluster``, to ``cluster``, which
    sets the node id, gossip port and join list of each node itself), recording them
    in ``flags``."""
    group: ArgumentContainer = parser.add_argument_group(
        "membership",
        "how the members find each other: a static --peers list (default), etcd, gossip, or DNS",
    )
    if cluster:
        flags.add(
            group,
            "--membership",
            choices=("static", "etcd", "gossip"),
            default="static",
            help="static: every node gets the full --peers list (default); etcd: the "
            "nodes register in etcd (--etcd URL, or an etcd started for the cluster); "
            "gossip: node i gossips on UDP port PORT+i and the others join node 0",
        )
    else:
        flags.add(
            group,
            "--node-id",
            metavar="ID",
            help="this node's stable id in etcd and gossip (default: host:port of its "
            "URL); env SHOAL_NODE_ID",
        )
    flags.add(
        group,
        "--etcd",
        metavar="URL[,URL...]",
        help="find the members in etcd at these client URLs, e.g. http://127.0.0.1:2379; "
        "env SHOAL_ETCD",
    )
    flags.add(
        group,
        "--cluster",
        metavar="NAME",
        help="the cluster's name in etcd: keys /shoal/NAME/members/NODE-ID (default "
        "'default'); env SHOAL_CLUSTER",
    )
    flags.add(
        group,
        "--etcd-ttl",
        metavar="SECONDS",
        help="lease TTL: a dead node is dropped within this long (default 3); env SHOAL_ETCD_TTL",
    )
    flags.add(
        group,
        "--etcd-ca",
        metavar="FILE",
        help="PEM CA of etcd's server certificate (https:// endpoints); env SHOAL_ETCD_CA",
    )
    flags.add(
        group,
        "--etcd-cert",
        metavar="FILE",
        help="PEM client certificate to present to etcd; env SHOAL_ETCD_CERT",
    )
    flags.add(
        group,
        "--etcd-key",
        metavar="FILE",
        help="PEM private key of --etcd-cert; env SHOAL_ETCD_KEY",
    )
    flags.add(
        group,
        "--etcd-user",
        metavar="NAME",
        help="etcd user to authenticate as (with --etcd-password-file); env SHOAL_ETCD_USER",
    )
    flags.add(
        group,
        "--etcd-password-file",
        metavar="FILE",
        help="file holding the etcd user's password; env SHOAL_ETCD_PASSWORD_FILE",
    )
    if not cluster:
        flags.add(
            group,
            "--gossip-port",
            metavar="PORT",
            help="find the members by gossip (SWIM) on this UDP port (0: any); "
            "env SHOAL_GOSSIP_PORT",
        )
        flags.add(
            group,
            "--join",
            metavar="HOST:PORT[,...]",
            help="gossip addresses of one or more members to join through; env SHOAL_JOIN",
        )
        flags.add(
            group,
            "--gossip-advertise",
            metavar="HOST:PORT",
            help="the gossip address the others use (default: the listening one); "
            "env SHOAL_GOSSIP_ADVERTISE",
        )
    if not cluster:
        flags.add(
            group,
            "--dns",
            metavar="NAME",
            help="find the members in DNS: every A/AAAA address of NAME is a member on this "
            "node's peer port and scheme; env SHOAL_DNS",
        )
        flags.add(
            group,
            "--dns-srv",
            metavar="_SERVICE._PROTO.NAME",
            help="find the members in DNS: every SRV record of this name is a member on "
            "its target and port (extra shoal[dns]); env SHOAL_DNS_SRV",
        )
        flags.add(
            group,
            "--dns-interval",
            metavar="SECONDS",
            help="look the DNS members up again this often (default 5); env SHOAL_DNS_INTERVAL",
        )
        flags.add(
            group,
            "--dns-server",
            metavar="HOST:PORT",
            help="ask this DNS server (an IP address and port) instead of the system's "
            "resolver (extra shoal[dns]); env SHOAL_DNS_SERVER",
        )
        flags.add(
            group,
            "--dns-option",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="any other DNS setting, as in [node.dns]: timeout, max_members (repeatable)",
        )
    flags.add(
        group,
        "--etcd-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any other etcd setting, as in [node.etcd]: timeout, retry_interval, "
        "keepalive_interval, prefix (repeatable)",
    )
    flags.add(
        group,
        "--gossip-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any other gossip setting, as in [node.gossip]: probe_interval, "
        "probe_timeout, suspicion_timeout, gossip_fanout, max_packet, ... (repeatable)",
    )
    flags.add(
        group,
        "--gossip-keyring",
        metavar="FILE",
        help="gossip keys, one base64 AES key (16, 24 or 32 bytes) per line, the first "
        "the primary: every datagram is sealed and authenticated; env SHOAL_GOSSIP_KEYRING",
    )
    flags.add(
        group,
        "--gossip-cluster",
        metavar="NAME",
        help="the cluster's name, sealed into every datagram: nodes of another cluster "
        "are refused even under the same key (default 'default'); env SHOAL_GOSSIP_CLUSTER",
    )
    flags.add(
        group,
        "--gossip-accept-plain",
        action="store_true",
        default=None,
        help="with --gossip-keyring, accept plain datagrams too while sending sealed ones "
        "(a step of a live upgrade to sealed gossip); env SHOAL_GOSSIP_ACCEPT_PLAIN=1",
    )
    flags.add(
        group,
        "--gossip-send-plain",
        action="store_true",
        default=None,
        help="with --gossip-keyring and --gossip-accept-plain, still send plain datagrams "
        "(the first step of that upgrade); env SHOAL_GOSSIP_SEND_PLAIN=1",
    )
    flags.add(
        group,
        "--gossip-timers",
        choices=GOSSIP_PROFILES,
        help="gossip timer profile: lan (probe 1s, suspicion 4s; the default) or local "
        "(probe 0.3s, suspicion 1s: every node on one machine); env SHOAL_GOSSIP_TIMERS",
    )


# --------------------------------------------------------------------------- parsing


def parse_node_id(value: object, *, what: str = "node id") -> str:
    """Parse a node id.

    Raises:
        ConfigError: not a valid node id.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {value!r}")
    try:
        return check_node_id(value.strip())
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _list(value: object, *, what: str) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")] if value.strip() else []
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ConfigError(f"{what} must be comma-separated or a list of strings, got {value!r}")
    if any(not item for item in items):
        raise ConfigError(f"{what}: empty entry in {value!r}")
    return list(dict.fromkeys(items))


def _endpoints(value: object, *, what: str) -> tuple[str, ...]:
    urls = tuple(u.removesuffix("/") for u in _list(value, what=what))
    for url in urls:
        try:
            EtcdConfig.address(url)
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    return urls


def _addresses(value: object, *, what: str) -> tuple[str, ...]:
    addresses = tuple(_list(value, what=what))
    for address in addresses:
        _host_port(address, what=what)
    return addresses


def _host_port(value: object, *, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be host:port, got {value!r}")
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{what} must be host:port, got {value!r}")
    return value.strip()


def _timers(value: object, *, what: str) -> str:
    if value not in GOSSIP_PROFILES:
        raise ConfigError(f"{what} must be one of {', '.join(GOSSIP_PROFILES)}, got {value!r}")
    assert isinstance(value, str)
    return value


def _field_parsers(cls: type[Any], special: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """How each field of ``cls`` is read from text or TOML: durations for floats,
    whole numbers for ints, unless ``special`` says otherwise."""
    parsers: dict[str, Callable[..., Any]] = {}
    for f in dataclasses.fields(cls):
        if f.name in special:
            parsers[f.name] = special[f.name]
        elif f.name == "port":
            parsers[f.name] = parse_port
        elif f.type == "bool" or f.type is bool:
            parsers[f.name] = parse_bool
        elif "float" in str(f.type):
            parsers[f.name] = parse_duration
        elif "int" in str(f.type):
            parsers[f.name] = parse_int
        else:
            parsers[f.name] = parse_str
    return parsers


def _whole_seconds(value: object, *, what: str) -> int:
    seconds = parse_duration(value, what=what)
    if seconds != int(seconds):
        raise ConfigError(f"{what} must be whole seconds (etcd leases are), got {value!r}")
    return int(seconds)


def _etcd_fields() -> dict[str, Callable[..., Any]]:
    return _field_parsers(EtcdConfig, {"endpoints": _endpoints, "lease_ttl": _whole_seconds})


def _gossip_fields() -> dict[str, Callable[..., Any]]:
    fields = _field_parsers(GossipConfig, {"join": _addresses, "advertise": _host_port})
    fields["timers"] = _timers
    return fields


def _parse_table(
    value: object, *, what: str, fields: Mapping[str, Callable[..., Any]]
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a table")
    options = {}
    for key, item in value.items():
        parse = fields.get(key)
        if parse is None:
            raise ConfigError(f"unknown key {key!r} in {what}; expected one of {sorted(fields)}")
        options[key] = parse(item, what=f"{what} {key}")
    return options


def _dns_fields() -> dict[str, Callable[..., Any]]:
    return _field_parsers(DnsConfig, {"server": _host_port})


def parse_dns_table(value: object, *, what: str = "[node.dns]") -> dict[str, Any]:
    """Parse the ``[node.dns]`` table into :class:`~shoal.config.DnsConfig` options.

    Raises:
        ConfigError: an unknown key or a malformed value.
    """
    return _parse_table(value, what=what, fields=_dns_fields())


def parse_etcd_table(value: object, *, what: str = "[node.etcd]") -> dict[str, Any]:
    """Parse the ``[node.etcd]`` table into :class:`~shoal.config.EtcdConfig` options.

    Raises:
        ConfigError: an unknown key or a malformed value.
    """
    return _parse_table(value, what=what, fields=_etcd_fields())


def parse_gossip_table(value: object, *, what: str = "[node.gossip]") -> dict[str, Any]:
    """Parse the ``[node.gossip]`` table into :class:`~shoal.config.GossipConfig` options
    (plus ``timers``, the profile name).

    Raises:
        ConfigError: an unknown key or a malformed value.
    """
    return _parse_table(value, what=what, fields=_gossip_fields())


def resolve_membership(
    node_options: MutableMapping[str, Any], args: argparse.Namespace, environ: Mapping[str, str]
) -> None:
    """Merge the membership flags and variables over the file's tables in
    ``node_options``, and turn the tables into :class:`~shoal.config.EtcdConfig` and
    :class:`~shoal.config.GossipConfig`.

    Raises:
        ConfigError: a malformed value, or settings that contradict each other.
    """
    etcd: dict[str, Any] | None = node_options.pop("etcd", None)
    gossip: dict[str, Any] | None = node_options.pop("gossip", None)
    dns = _resolve_dns(node_options.pop("dns", None), args, environ)
    etcd_fields, gossip_fields = _etcd_fields(), _gossip_fields()
    for key, flag, env in _ETCD_OPTIONS:
        value = given(getattr(args, flag[2:].replace("-", "_"), None), environ.get(env))
        if value is not None:
            etcd = {} if etcd is None else etcd
            etcd[key] = etcd_fields[key](value, what=flag)
    for item in getattr(args, "etcd_option", None) or ():
        key, value = _option(item, "--etcd-option", etcd_fields)
        etcd = {} if etcd is None else etcd
        etcd[key] = value
    timers: str | None = None
    sealing: dict[str, Any] = {}
    gossip_options = [
        _option(item, "--gossip-option", gossip_fields)
        for item in getattr(args, "gossip_option", None) or ()
    ]
    for key, flag, env in _GOSSIP_OPTIONS:
        value = given(getattr(args, flag[2:].replace("-", "_"), None), environ.get(env))
        if value is None:
            continue
        parsed = gossip_fields[key](value, what=flag)
        if key == "timers":
            # A timer profile alone does not turn gossip on (it may sit in a shared
            # environment); it applies once gossip is on, over the file's profile.
            timers = parsed
            continue
        if key in _SEALING_KEYS:
            sealing[key] = parsed
            continue
        gossip = {} if gossip is None else gossip
        gossip[key] = parsed
    if gossip_options:
        if gossip is None:
            # Tuning alone does not turn gossip on, as --gossip-timers does not.
            raise ConfigError(
                "--gossip-option needs gossip: --gossip-port, --join or [node.gossip]"
            )
        gossip.update(gossip_options)
    if sealing:
        if gossip is None:
            flag = next(f for k, f, _ in _GOSSIP_OPTIONS if k in sealing)
            raise ConfigError(
                f"{flag} seals gossip: it needs gossip (--gossip-port, --join or [node.gossip])"
            )
        gossip.update(sealing)
    if etcd is not None:
        if "endpoints" not in etcd:
            raise ConfigError(
                "the etcd settings (--cluster, --etcd-ttl, --etcd-ca, ...) need --etcd URL "
                "(or endpoints in [node.etcd])"
            )
        node_options["etcd"] = EtcdConfig(**etcd)
    if gossip is not None:
        if etcd is not None:
            raise ConfigError("choose one membership: --etcd or gossip (--gossip-port, --join)")
        profile = timers or gossip.pop("timers", "lan")
        gossip.pop("timers", None)
        node_options["gossip"] = GossipConfig.profile(profile, **gossip)
    if dns is not None:
        if etcd is not None or gossip is not None:
            other = "--etcd" if etcd is not None else "gossip"
            raise ConfigError(f"choose one membership: DNS (--dns, --dns-srv) or {other}")
        node_options["dns"] = dns
    if etcd is None and gossip is None and dns is None:
        return
    which = "--etcd" if etcd is not None else "gossip" if gossip is not None else "DNS"
    if node_options.get("peers"):
        raise ConfigError(f"--peers is the static member list; with {which} the members are found")
    if node_options.get("port") is None:
        raise ConfigError(
            f"{which} needs --port: the port this node serves the peer protocol on (0: any)"
        )
    host = node_options.get("host", "127.0.0.1")
    if node_options.get("self_url") is None and host in ("0.0.0.0", "::", ""):
        raise ConfigError(
            f"--host {host or repr(host)} listens everywhere, so it is not an address "
            "the other members can use: give --self http://THIS-HOST:PORT"
        )


def _resolve_dns(
    table: dict[str, Any] | None, args: argparse.Namespace, environ: Mapping[str, str]
) -> DnsConfig | None:
    """The DNS settings: the flags and variables over the ``[node.dns]`` table."""
    dns = table
    fields = _dns_fields()
    for key, flag, env in _DNS_OPTIONS:
        value = given(getattr(args, flag[2:].replace("-", "_"), None), environ.get(env))
        if value is not None:
            dns = {} if dns is None else dns
            dns[key] = fields[key](value, what=flag)
    options = [
        _option(item, "--dns-option", fields, flagged=_DNS_FLAG_KEYS)
        for item in getattr(args, "dns_option", None) or ()
    ]
    if options and dns is None:
        raise ConfigError("--dns-option needs --dns NAME or --dns-srv _SERVICE._PROTO.NAME")
    if dns is None:
        return None
    dns.update(options)
    if dns.get("name") is None and dns.get("srv") is None:
        raise ConfigError(
            "the DNS settings (--dns-interval, --dns-server, [node.dns]) need --dns NAME "
            "or --dns-srv _SERVICE._PROTO.NAME"
        )
    if dns.get("name") is not None and dns.get("srv") is not None:
        raise ConfigError("choose one DNS name: --dns NAME (A/AAAA) or --dns-srv (SRV)")
    return DnsConfig(**dns)


def _option(
    item: str,
    flag: str,
    fields: Mapping[str, Callable[..., Any]],
    *,
    flagged: frozenset[str] = _FLAG_KEYS,
) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` of ``--etcd-option``, ``--gossip-option`` or ``--dns-option``
    (``flagged``: the keys with a flag of their own, refused here)."""
    key, value = split_assignment(item, flag)
    parse = fields.get(key)
    if parse is None or key in flagged:
        choices = sorted(set(fields) - flagged)
        raise ConfigError(f"{flag} {item!r}: unknown key {key!r}; expected one of {choices}")
    return key, parse(value.strip(), what=f"{flag} {key}")
