"""The ``shoal`` command: its argument parser and the dispatch to the commands.

``serve`` runs a node (:mod:`shoal.cli.serve`, its settings in
:mod:`shoal.cli.plan`), ``cluster`` several (:mod:`shoal.cli.cluster`), ``demo``
tours a cluster (:mod:`shoal.cli.demo`), ``bench hitratio`` compares policies
(:mod:`shoal.cli.hitratio`), ``tls init`` writes development certificates
(:mod:`shoal.cli.tls`); ``get``, ``set``, ``del``, ``invalidate``, ``stats``
and ``members`` talk to a node (:mod:`shoal.cli.client_commands`).

Rules: this module is the entry point (``shoal.cli.main:main``) and nothing in
shoal imports it. A command's module is imported only when the command runs, so
a client command starts without loading the node. Exit codes: 0 success; 1 a
runtime failure (the server answered with an error, could not be reached, or
could not listen); 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from .._native import load_speedups, speedups_turned_off
from .._version import __version__
from ..errors import ConfigError
from .common import (
    DEFAULT_URL,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Parser,
    report_error,
)
from .hitratio import add_bench_parser
from .plan import add_serve_arguments
from .tls import add_tls_parser

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]


def _serve(args: argparse.Namespace) -> int:
    from .serve import run_serve

    return run_serve(args)


def _cluster(args: argparse.Namespace) -> int:
    from .cluster import run_cluster

    return run_cluster(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _client(command: str) -> Handler:
    """The handler of a client command, which imports the client commands when it runs."""

    def run(args: argparse.Namespace) -> int:
        from . import client_commands as commands

        handlers: dict[str, Handler] = {
            "get": commands.run_get,
            "set": commands.run_set,
            "del": commands.run_del,
            "invalidate": commands.run_invalidate,
            "stats": commands.run_stats,
            "members": commands.run_members,
        }
        return handlers[command](args)

    return run


def version_text() -> str:
    """What ``shoal --version`` prints: the version, and whether the C speedups run."""
    if load_speedups() is not None:
        build = "with its C speedups"
    elif speedups_turned_off():
        build = "pure Python: the C speedups are turned off by SHOAL_NO_SPEEDUPS"
    else:
        build = "pure Python: installed without its C speedups (no C compiler at install)"
    return f"shoal {__version__} ({build})"


def build_parser() -> argparse.ArgumentParser:
    """The ``shoal`` argument parser with its subcommands."""
    parser = Parser(
        prog="shoal",
        description="shoal: a distributed read-through cache. Run a node, or talk to one.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    serve = commands.add_parser(
        "serve",
        help="run a cache node in the foreground",
        description="Run a cache node with an HTTP API until SIGINT or SIGTERM. "
        "Flags override SHOAL_* environment variables, which override the config file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shoal serve --slowdb\n"
        "  shoal serve --group scores=sql:sqlite:///var/db/scores.db \\\n"
        "              --query 'scores=SELECT score FROM scores WHERE name = :key'\n"
        "  shoal serve --group users=myapp.cache:load_user --capacity users=256MiB --ttl users=60\n"
        "  shoal serve --config shoal.toml",
    )
    add_serve_arguments(serve, cluster=False)
    serve.set_defaults(handler=_serve)

    cluster = commands.add_parser(
        "cluster",
        help="run a local cluster: several serve processes, supervised",
        description="Run NODES `shoal serve` processes on this machine as one cluster:\n"
        "node i takes peer port PORT+i and HTTP API port API-PORT-i, and every node\n"
        "lists all of them as peers. With --slowdb they share one demo database.\n"
        "Ctrl-C or SIGTERM stops them all; a node that dies is reported and the\n"
        "others keep serving. Every other flag is passed to each node as is.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shoal cluster --slowdb                 # peers 8001-8003, API 9999, 9998, 9997\n"
        "  shoal cluster --nodes 5 --port 7001 --api-port 7101 --group users=myapp:load\n"
        "  shoal tls init pki && shoal cluster --slowdb --tls-dir pki   # mutual TLS",
    )
    cluster.add_argument(
        "--nodes", metavar="N", type=int, default=3, help="how many nodes (default 3)"
    )
    cluster.add_argument(
        "--tls-dir",
        metavar="DIR",
        help="TLS and mutual TLS from `shoal tls init DIR --nodes N`: node i serves "
        "DIR/node-i.pem with DIR/ca.pem as its CA (instead of --tls-cert, --tls-key)",
    )
    serve_flags = add_serve_arguments(cluster, cluster=True)
    cluster.set_defaults(handler=_cluster, serve_actions=serve_flags)

    demo = commands.add_parser(
        "demo",
        help="a scripted, self-checking tour of a 3-node cluster",
        description="Start a 3-node cluster in front of the SlowDB demo database, ask "
        "every node for the same keys, show that the database was asked once per key "
        "in the whole cluster, show the hits, SIGKILL one node and show that the "
        "survivors still answer. Exits 0 when every check passed.",
    )
    demo.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        help="first peer port; the nodes use PORT..PORT+2 and PORT+3..PORT+5 for their "
        "HTTP APIs (default: free ports)",
    )
    demo.add_argument(
        "--slowdb-delay",
        metavar="SECONDS",
        default="50ms",
        help="the database's delay (default 50ms)",
    )
    demo.add_argument(
        "--show-logs", action="store_true", help="print every node's whole log at the end"
    )
    demo.set_defaults(handler=_demo)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--url",
            metavar="URL",
            help=f"the node's HTTP API (env SHOAL_URL; default {DEFAULT_URL})",
        )
        sub.add_argument(
            "--timeout",
            metavar="SECONDS",
            type=float,
            default=30.0,
            help="how long to wait for the answer (default 30)",
        )
        # TLS towards the node, with serve's names (read by client_commands._tls).
        for flag, env, text in (
            ("--tls-ca", "SHOAL_TLS_CA", "PEM CA that signed the node's certificate"),
            ("--tls-cert", "SHOAL_TLS_CERT", "PEM client certificate, for mutual TLS"),
            ("--tls-key", "SHOAL_TLS_KEY", "PEM private key of --tls-cert"),
        ):
            sub.add_argument(flag, metavar="FILE", help=f"{text} (env {env})")
        return sub

    get = client("get", "print a key's value")
    get.add_argument("key", metavar="KEY")
    get.add_argument(
        "--group", metavar="NAME", help="the group (env SHOAL_GROUP; optional with one group)"
    )
    get.set_defaults(handler=_client("get"))

    set_ = client("set", "store a value")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE", help="the value; '-' reads it from stdin")
    set_.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    set_.add_argument("--ttl", metavar="SECONDS", help="time to live (default: the group's)")
    set_.set_defaults(handler=_client("set"))

    delete = client("del", "delete a key")
    delete.add_argument("key", metavar="KEY")
    delete.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    delete.set_defaults(handler=_client("del"))

    invalidate = client("invalidate", "drop every key of a group on every member")
    invalidate.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    invalidate.set_defaults(handler=_client("invalidate"))

    stats = client("stats", "show statistics per group")
    stats.add_argument("--json", action="store_true", help="print the raw JSON")
    stats.set_defaults(handler=_client("stats"))

    members = client(
        "members", "show the cluster as a node sees it: members, ids, sources, ring shares"
    )
    members.add_argument("--json", action="store_true", help="print the raw JSON")
    members.set_defaults(handler=_client("members"))

    add_bench_parser(commands)  # `shoal bench hitratio`: see cli/hitratio.py
    add_tls_parser(commands)  # `shoal tls init`: see cli/tls.py
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shoal`` command line; return the exit code.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        return report_error(args.command, exc, EXIT_USAGE)
    except CommandError as exc:
        return report_error(args.command, exc, EXIT_FAILURE)
    except KeyboardInterrupt:
        # Ctrl-C in a client command (serve handles its own signals).
        return 130
    except BrokenPipeError:
        # `shoal get big | head -c 10`: the reader left; not an error worth a traceback.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit flush cannot fail
        return EXIT_OK
