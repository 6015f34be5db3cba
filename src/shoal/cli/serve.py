"""``shoal serve``: run one node from a :class:`~shoal.cli.plan.ServePlan` until a signal.

Rules: signal handlers are installed before the node starts, so a signal during
start-up also ends in a clean close; a second signal while closing (a second or more after
the first; see :class:`~shoal.cli.common.StopSignals`) exits at once.
A supervised node (``shoal cluster``, ``shoal demo``) leaves SIGINT to its
supervisor and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import shlex
import signal
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

from ..errors import ConfigError, MissingExtra
from ..tls import NodeTls
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    StopSignals,
    configure_logging,
    report_error,
)
from .plan import GroupPlan, ServePlan, build_serve_plan
from .tracing import NodeLabel, TracingTransport, node_label, traced_loader

if TYPE_CHECKING:
    from ..config import TlsConfig
    from ..node import Node

__all__ = ["run_serve", "curl_urls", "curl_tls_flags", "host_port", "GC_GEN0_THRESHOLD"]

log = logging.getLogger("shoal.cli")


def run_serve(args: argparse.Namespace) -> int:
    """Run ``shoal serve`` until SIGINT or SIGTERM; return the exit code."""
    try:
        plan = build_serve_plan(args, os.environ)
    except ConfigError as exc:
        return report_error("serve", exc, EXIT_USAGE)
    if plan.supervised:
        # Before anything slow: a Ctrl-C meant for the supervisor reaches this
        # process too (same process group) and must not stop it on its own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    label = NodeLabel(_planned_label(plan))
    configure_logging(plan.log_level, label)
    from ..node import new_event_loop

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(plan, label))
    except (ConfigError, MissingExtra) as exc:
        return report_error("serve", exc, EXIT_USAGE)
    except OSError as exc:
        return report_error("serve", f"cannot start: {exc}", EXIT_FAILURE)
    except asyncio.CancelledError:
        return report_error(
            "serve", "stopped by a second signal before a clean shutdown", EXIT_FAILURE
        )


def _planned_label(plan: ServePlan) -> str:
    """The node's log label before it starts: from its URL, if that is known yet."""
    node = plan.node
    if node.self_url is not None:
        return node_label(node.self_url)
    if node.port:  # 0 is known only once bound
        return node_label(f"http://{node.host}:{node.port}")
    return ""


async def _serve(plan: ServePlan, label: NodeLabel) -> int:
    from ..loaders import load_spec
    from ..node import Node
    from .slowdb import SlowDB

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()

    seen_signals = StopSignals()

    def on_signal(sig: signal.Signals) -> None:
        seen = seen_signals.received()
        if seen == "first":
            log.info("received %s, shutting down", sig.name)
            stop.set()
        elif seen == "again" and main_task is not None:
            # A second Ctrl-C while closing: the user wants out now.
            log.warning("received %s again, exiting without waiting", sig.name)
            main_task.cancel()

    # Handlers first: a signal during start-up must also end in a clean close.
    signals = (signal.SIGTERM,) if plan.supervised else (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    if plan.supervised:
        _stop_when_stdin_closes(loop, stop)
    transport = None
    # One set of TLS contexts for the servers and the peer clients: SIGHUP rotates both.
    tls = NodeTls(plan.node.tls) if plan.node.tls is not None else None
    providers = _otel_providers(plan)
    if plan.clustered:
        from ..node import default_transport

        telemetry = None
        if plan.node.otel:
            from ..otel import Telemetry

            # The peer requests carry the trace context of the node's spans.
            telemetry = Telemetry(**providers)
        transport = default_transport(plan.node, tls, telemetry=telemetry)
        if plan.log_level in ("debug", "info"):  # the lines it writes are INFO lines
            transport = TracingTransport(transport)
    node = Node(plan.node, transport=transport, tls=tls, **providers)
    # SIGHUP: read the certificates, tokens and keyring again (rotation).
    loop.add_signal_handler(signal.SIGHUP, node.reload)
    signals = (*signals, signal.SIGHUP)
    try:
        for group in plan.groups:
            if group.slowdb:
                options: dict[str, Any] = {}
                if plan.slowdb_delay is not None:
                    options["delay"] = plan.slowdb_delay
                loader: Any = SlowDB(plan.slowdb_file, **options)
            elif group.loader is not None:
                loader = load_spec(group.loader, query=group.query)
            else:
                loader = None
            if loader is not None and plan.clustered:
                loader = traced_loader(loader, node)
            # Registered at once, so node.aclose() closes it whatever fails next.
            node.add_group(group.config, loader)
        await node.start()
        _tune_gc()
        if node.self_url is not None:
            label.set(node_label(node.self_url))
        address = node.api_address
        lines = _banner(plan, node, address)
        if plan.supervised:
            # The supervisor prints one banner for the whole cluster; the node has
            # already logged its members.
            for line in lines[1 if node.peers is not None else 0 :]:
                log.info("%s", line.removeprefix("shoal: "))
        else:
            for line in lines:
                print(line, flush=True)
        await stop.wait()
    finally:
        try:
            # The handlers stay while closing: a second signal cancels this task.
            await node.aclose()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if plan.supervised:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sys.stdin.fileno())
        for provider in providers.values():
            provider.shutdown()  # exports what is left
    log.info("stopped")
    return EXIT_OK


def _otel_providers(plan: ServePlan) -> dict[str, Any]:
    """The tracer and meter providers of ``--otel``, from the ``OTEL_*`` variables."""
    if not plan.node.otel:
        return {}
    from ..otel import providers_from_environment

    tracer_provider, meter_provider = providers_from_environment(os.environ)
    providers: dict[str, Any] = {}
    if tracer_provider is not None:
        providers["tracer_provider"] = tracer_provider
    if meter_provider is not None:
        providers["meter_provider"] = meter_provider
    return providers


GC_GEN0_THRESHOLD: Final = 10_000
"""Allocations between two collections of the youngest generation in a ``serve``
process (Python's default: 700)."""


def _tune_gc() -> None:
    """Tune the cyclic garbage collector for a serving process (this process is the
    node's alone; an embedding application keeps its own settings).

    Every request allocates short-lived tasks, futures and coroutines, and with
    the defaults the collector ran every few dozen requests and, now and then,
    re-scanned every object of the process: about a fifth of a busy node's time
    when it fetches from peers. So: collect once, freeze what is alive now
    (modules, classes, the node itself: they live as long as the process and
    need no scanning), and collect the youngest generation less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file: the supervisor holds the other end of
    the pipe, and the kernel closes it when the supervisor exits, however it exits."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # nothing is ever sent; only the end of the pipe matters
        # End of file stays readable: stop watching, or this would spin.
        loop.remove_reader(fd)
        if not stop.is_set():
            log.info("the supervisor is gone (stdin closed), shutting down")
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (ValueError, OSError, NotImplementedError):
        # A regular file or a terminal cannot be watched: then only signals stop the node.
        log.debug("stdin cannot be watched; only SIGTERM stops this node")


def _banner(plan: ServePlan, node: Node, address: tuple[str, int] | None) -> list[str]:
    lines = []
    picker = node.peers
    if picker is not None:
        members = [
            f"{url} (this node)" if url == picker.self_url else url
            for url in picker.view.ring.nodes
        ]
        peer_address = node.peer_address
        if peer_address is None:
            listening = "no peer server"
        elif plan.node.transport == "grpc":
            listening = f"gRPC on {host_port(*peer_address)}"
        else:
            scheme = "https" if plan.node.tls is not None else "http"
            listening = f"peers on {scheme}://{host_port(*peer_address)}{plan.node.base_path}"
        lines.append(
            f"shoal: {node_label(picker.self_url)} is {picker.self_url} ({listening}, "
            f"ring {plan.node.ring}); members: {', '.join(members)}"
        )
    if address is None:
        lines.append("shoal: no HTTP API (--no-api); clients use the peer port")
    else:
        tls = plan.node.tls
        base = f"{'https' if tls is not None else 'http'}://{host_port(*address)}"
        curl = "curl " + curl_tls_flags(tls)
        for group, url in curl_urls(plan, base):
            lines.append(
                f"shoal: group {group.config.name!r} ready ({group.describe()}): {curl}'{url}'"
            )
    if plan.node.transport == "grpc" and node.peer_address is not None:
        target = host_port(*node.peer_address)
        for group in plan.groups:
            request = json.dumps(
                {"group": group.config.name, "key": "Tom" if group.slowdb else "KEY"},
                separators=(",", ":"),
            )
            lines.append(
                f"shoal: group {group.config.name!r} over gRPC: grpcurl {_grpcurl_tls(plan)}"
                f"-d '{request}' {target} pb.GroupCache/Get"
            )
    return lines


def curl_tls_flags(tls: TlsConfig | None, client: tuple[str, str] | None = None) -> str:
    """The curl flags (with a trailing space) that reach an API with ``tls``: its CA
    (``--cacert``), and a client certificate when the API asks for one (``client``:
    (cert, key), default the node's own); empty without TLS."""
    if tls is None:
        return ""
    flags = f"--cacert {shlex.quote(tls.ca)} " if tls.ca is not None else ""
    if tls.api_client_auth != "none":
        cert, key = client if client is not None else (tls.cert, tls.key)
        flags += f"--cert {shlex.quote(cert)} --key {shlex.quote(key)} "
    return flags


def _grpcurl_tls(plan: ServePlan) -> str:
    """grpcurl's flags for the node's gRPC port (mutual TLS: the node's own certificate)."""
    tls = plan.node.tls
    if tls is None:
        return "-plaintext "
    flags = f"-cacert {shlex.quote(tls.ca)} " if tls.ca is not None else ""
    if tls.mutual:
        flags += f"-cert {shlex.quote(tls.cert)} -key {shlex.quote(tls.key)} "
    return flags


def curl_urls(plan: ServePlan, base: str) -> list[tuple[GroupPlan, str]]:
    """A URL to try for each group of ``plan`` on the HTTP API at ``base``."""
    several = len(plan.groups) > 1
    urls = []
    for group in plan.groups:
        url = f"{base}/api?key={'Tom' if group.slowdb else 'KEY'}"
        if several:
            url += "&group=" + urllib.parse.quote(group.config.name, safe="")
        urls.append((group, url))
    return urls


def host_port(host: str, port: int) -> str:
    """``host:port`` to paste into a URL: a wildcard address becomes its family's loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
