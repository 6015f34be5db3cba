"""etcd membership over TLS with auth, against a real etcd and real ``shoal serve``s.

One etcd serves the module: client TLS with client certificates required
(``--client-cert-auth``), certificates made here with :mod:`shoal.cli.tls`, auth
enabled with a ``shoal`` user whose role may read and write ``/shoal/`` only, and
auth tokens that expire after one idle second (``--auth-token-ttl=1``). Each test
uses its own ``--cluster`` name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.cluster_views import all_see, cluster_view, missing, wait_for
from helpers.processes import ShoalServer, free_port, run_shoal, shoal_serve
from helpers.secure_etcd import Pki, SecureEtcd, make_pki
from shoal.cli.localetcd import etcd_binary
from shoal.config import EtcdConfig
from shoal.errors import ConfigError
from shoal.membership.etcd import EtcdMembership, read_credentials, read_password

PASSWORD = "s3cret-Pa55-word-Kq7"
"""The ``shoal`` user's password: it must never show in a log or an answer."""

JOIN_WITHIN = 10.0
"""Seconds a started node may take to show up on every node."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The CA etcd and the nodes trust, etcd's server certificate and a client one."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def etcd(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    """The module's etcd: TLS, client certificates required, auth on."""
    if etcd_binary() is None:
        missing("etcd is not installed (Debian: apt-get install etcd-server)")
    with SecureEtcd(tmp_path_factory.mktemp("etcd"), pki, "--auth-token-ttl=1") as server:
        asyncio.run(server.enable_auth("shoal", PASSWORD))
        yield server


@pytest.fixture
def live_etcd(etcd: SecureEtcd) -> Iterator[SecureEtcd]:
    """The module's etcd, running at the start of the test and again after it."""
    etcd.start()
    try:
        yield etcd
    finally:
        etcd.start()


def password_file(directory: Path, text: str = PASSWORD + "\n") -> Path:
    """A password file (mode 0600) holding ``text``."""
    path = directory / "etcd-password"
    path.write_text(text)
    path.chmod(0o600)
    return path


def node_args(
    etcd: SecureEtcd,
    cluster: str,
    pki: Pki,
    password: Path | None,
    *extra: str,
    cert: bool = True,
    ca: Path | None = None,
) -> list[str]:
    """``shoal serve`` arguments of a member of ``cluster`` in the secure etcd."""
    args = ["--slowdb", "--etcd", etcd.url, "--cluster", cluster]
    args += ["--etcd-ca", str(ca or pki.ca)]
    if cert:
        args += ["--etcd-cert", str(pki.client_cert), "--etcd-key", str(pki.client_key)]
    if password is not None:
        args += ["--etcd-user", "shoal", "--etcd-password-file", str(password)]
    return [*args, *extra]


def start_node(stack: contextlib.ExitStack, *args: str) -> ShoalServer:
    """One more node on its own free peer port, once it is healthy."""
    port = free_port()
    node = stack.enter_context(shoal_serve(*args, "--port", str(port)))
    node.peer_port = port
    return node


def metric(node: ShoalServer, series: str) -> float:
    """The value of one sample of ``GET /metrics`` (0 when it is not there)."""
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def logged(node: ShoalServer, line: str) -> Callable[[], bool]:
    """A condition: ``line`` is in the node's log."""
    return lambda: line in node.stderr()


def refused_count(node: ShoalServer) -> float:
    """Failed rounds of the node's membership task."""
    return metric(node, 'shoal_background_errors_total{task="membership"}')


def test_two_nodes_register_over_tls_with_auth_and_renew_expired_tokens(
    live_etcd: SecureEtcd, pki: Pki, tmp_path: Path
) -> None:
    """Two nodes with a client certificate and the ``shoal`` user register and see
    each other through the TLS+auth etcd; their keys are in etcd; auth tokens that
    expire between keep-alives are renewed without a reconnection; the password is
    in no log, no ``/v1/cluster`` and no ``shoal members``."""
    secret = password_file(tmp_path)
    args = node_args(live_etcd, "pair", pki, secret)
    with contextlib.ExitStack() as stack:
        nodes = [start_node(stack, *args) for _ in range(2)]
        urls = [n.peer_url for n in nodes]
        wait_for(all_see(nodes, urls), "both members on both nodes", JOIN_WITHIN)

        keys = asyncio.run(live_etcd.root_get_prefix(b"/shoal/pair/members/"))
        assert sorted(json.loads(value)["url"] for _, value in keys) == sorted(urls)

        # Lease keep-alives carry no token, so node 0's token expires unused; revoke
        # its lease: it registers again, and etcd refuses its stale token once.
        time.sleep(1.5)
        lease = cluster_view(nodes[0])["membership"]["lease"]
        asyncio.run(live_etcd.root_revoke_lease(lease))
        wait_for(
            lambda: cluster_view(nodes[0])["membership"]["lease"] != lease,
            "node 0 to register again",
            10.0,
        )
        wait_for(all_see(nodes, urls), "both members again", JOIN_WITHIN)
        membership = cluster_view(nodes[0])["membership"]
        assert membership["reauthentications"] >= 1, membership
        assert membership["connects"] == 1, membership  # renewed in place
        assert "authenticating again" in nodes[0].stderr()
        for node in nodes:
            membership = cluster_view(node)["membership"]
            assert membership["connected"] is True
            assert membership["tls"] is True
            assert membership["user"] == "shoal"
            assert membership["last_error"] is None

        # SIGHUP reads the files again: a broken one keeps the old credentials.
        secret.write_text("\n")
        nodes[0].proc.send_signal(signal.SIGHUP)
        wait_for(
            logged(
                nodes[0],
                "reloading etcd credentials failed, still using the old one: the etcd "
                f"password file {secret} is empty",
            ),
            "the failed reload in the log",
            5.0,
        )
        secret.write_text(PASSWORD + "\n")
        nodes[0].proc.send_signal(signal.SIGHUP)
        wait_for(logged(nodes[0], "reloaded etcd credentials"), "the reload in the log", 5.0)

        shown = run_shoal("members", "--url", nodes[0].url)
        assert shown.returncode == 0, shown.stderr
        assert "2 members by etcd (cluster 'pair'" in shown.stdout.decode()
        for node in nodes:
            with urllib.request.urlopen(f"{node.url}/v1/cluster", timeout=5) as response:
                assert PASSWORD.encode() not in response.read()
        assert PASSWORD not in shown.stdout.decode() + shown.stderr.decode()
        for node in nodes:
            assert PASSWORD not in node.stderr() + node.stdout()


def test_refusals_are_logged_clearly_counted_and_retried_with_back_off(
    live_etcd: SecureEtcd, pki: Pki, tmp_path: Path
) -> None:
    """A wrong password, no client certificate, a foreign CA and a prefix the role
    may not touch: each node keeps serving alone, logs one line that says what to
    fix, counts each refusal as a membership background error and retries with a
    growing pause (no crash loop); the wrong password, once corrected in its file,
    gets the node in at its next retry."""
    foreign = make_pki(tmp_path / "foreign", "another CA")
    wrong = password_file(tmp_path, "not-the-password\n")
    (tmp_path / "right").mkdir()
    right = password_file(tmp_path / "right")
    cases = {
        "no client certificate": (
            node_args(live_etcd, "refused", pki, right, cert=False),
            "etcd rejected this node's client certificate (none was given",
        ),
        "foreign CA": (
            node_args(live_etcd, "refused", pki, right, ca=foreign.ca),
            f"etcd's server certificate is not trusted: it does not verify against {foreign.ca}",
        ),
        "prefix not granted": (
            node_args(live_etcd, "refused", pki, right, "--etcd-option", "prefix=/elsewhere"),
            "etcd denied user 'shoal' access to /elsewhere/refused/members/: grant its role "
            "readwrite on the prefix /elsewhere/",
        ),
        # Last: the youngest, so its pause is still short when its file is corrected.
        "wrong password": (
            node_args(live_etcd, "refused", pki, wrong),
            "etcd refused user 'shoal': wrong user name or password",
        ),
    }
    with contextlib.ExitStack() as stack:
        nodes = {what: start_node(stack, *args) for what, (args, _) in cases.items()}
        for what, (_, line) in cases.items():
            wait_for(logged(nodes[what], line), f"the log line of {what}", 10.0)
        # Retried a few times, each counted, with a pause that grows: after ~4 s of
        # doubling pauses from 0.1 s, a node has tried well under 20 times.
        time.sleep(2.0)
        for what, node in nodes.items():
            assert node.proc.poll() is None, f"{what}: the node exited\n{node.stderr()}"
            view = cluster_view(node)
            assert [m["url"] for m in view["members"]] == [node.peer_url], what
            assert view["membership"]["connected"] is False, what
            count = refused_count(node)
            assert 2 <= count < 20, (what, count)
            assert PASSWORD not in node.stderr(), what

        # Correct the password in its file: the next retry reads it and gets in.
        wrong.write_text(PASSWORD + "\n")
        node = nodes["wrong password"]
        wait_for(
            lambda: cluster_view(node)["membership"]["connected"] is True,
            "the corrected password to be used",
            20.0,
        )
        for node in nodes.values():
            assert PASSWORD not in node.stderr() + node.stdout()


def test_nodes_reconnect_after_the_secure_etcd_restarts(
    live_etcd: SecureEtcd, pki: Pki, tmp_path: Path
) -> None:
    """SIGKILL etcd under two registered nodes and start it again (tokens die with
    it): both reconnect over TLS, authenticate again and still see each other; a
    node started after the restart joins them."""
    args = node_args(live_etcd, "restart", pki, password_file(tmp_path))
    with contextlib.ExitStack() as stack:
        nodes = [start_node(stack, *args) for _ in range(2)]
        wait_for(all_see(nodes, [n.peer_url for n in nodes]), "both members", JOIN_WITHIN)
        live_etcd.kill()
        wait_for(
            lambda: all(cluster_view(n)["membership"]["connected"] is False for n in nodes),
            "both nodes to notice etcd is gone",
            10.0,
        )
        live_etcd.start()
        wait_for(
            lambda: all(cluster_view(n)["membership"]["connects"] >= 2 for n in nodes),
            "both nodes to reconnect",
            15.0,
        )
        nodes.append(start_node(stack, *args))
        wait_for(all_see(nodes, [n.peer_url for n in nodes]), "three members", JOIN_WITHIN)


def test_a_missing_or_empty_password_file_stops_the_start_naming_the_file(
    tmp_path: Path, pki: Pki
) -> None:
    """``shoal serve`` with a password file that is missing or has a blank first
    line exits 2 with a message naming the file, never its content; the reader
    takes the first line, stripped."""
    missing_file = tmp_path / "nowhere"
    blank = password_file(tmp_path, "\n" + PASSWORD + "\n")
    for path, says in ((missing_file, "cannot read"), (blank, "has an empty first line")):
        done = run_shoal(
            "serve",
            "--slowdb",
            "--api-port",
            str(free_port()),
            "--port",
            str(free_port()),
            "--etcd",
            "https://127.0.0.1:2379",
            "--etcd-ca",
            str(pki.ca),
            "--etcd-user",
            "shoal",
            "--etcd-password-file",
            str(path),
            timeout=30,
        )
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert f"etcd password file {path}" in err, err
        assert says in err, err
        assert PASSWORD not in err
    assert read_password(str(password_file(tmp_path, f"  {PASSWORD} \nsecond\n"))) == PASSWORD


def test_the_credential_files_are_checked_when_read(tmp_path: Path, pki: Pki) -> None:
    """A CA that is not PEM, a key of another certificate and TLS files with
    ``http://`` endpoints are refused with the file (or setting) named."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"etcd CA file {garbage} holds no PEM certificate"):
        read_credentials(EtcdConfig(endpoints=["https://127.0.0.1:2379"], ca=str(garbage)))
    other = make_pki(tmp_path / "other", "other")
    with pytest.raises(ConfigError, match="does not belong to the client certificate"):
        read_credentials(
            EtcdConfig(
                endpoints=["https://127.0.0.1:2379"],
                cert=str(pki.client_cert),
                key=str(other.client_key),
            )
        )
    with pytest.raises(ConfigError, match="must be https://"):
        EtcdConfig(endpoints=["http://127.0.0.1:2379"], ca=str(pki.ca))
    with pytest.raises(ConfigError, match="all https://"):
        EtcdConfig(endpoints=["http://127.0.0.1:2379", "https://127.0.0.1:2380"])
    creds = read_credentials(
        EtcdConfig(
            endpoints=["https://127.0.0.1:2379"],
            ca=str(pki.ca),
            cert=str(pki.client_cert),
            key=str(pki.client_key),
            user="shoal",
            password_file=str(password_file(tmp_path)),
        )
    )
    assert creds.channel is not None
    assert PASSWORD not in repr(creds)


def test_a_password_for_a_plain_remote_etcd_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user with an ``http://`` endpoint off this machine logs that the password
    goes in the clear (naming the endpoint, not the password); loopback does not."""
    secret = str(password_file(tmp_path))
    for endpoint in ("http://127.0.0.1:2379", "http://192.0.2.7:2379"):
        EtcdMembership(
            EtcdConfig(endpoints=[endpoint], user="shoal", password_file=secret),
            node_id="127.0.0.1:1",
            url="http://127.0.0.1:1",
        )
    warned = [r.getMessage() for r in caplog.records if "in the clear" in r.getMessage()]
    assert warned == [
        "the etcd password goes in the clear to http://192.0.2.7:2379: use https:// endpoints"
    ]
    assert PASSWORD not in caplog.text
