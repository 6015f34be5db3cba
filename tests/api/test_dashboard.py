"""The live dashboard (``GET /ui``): its assets and headers, its routes with API
tokens, and the page itself in headless Chromium against three ``shoal serve``
nodes gossiping on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import shoal
from helpers.browser import Watched, chromium, watched_page
from helpers.cluster_views import all_see, cluster_view, wait_for
from helpers.processes import LoadLog, free_ports, shoal_nodes, shoal_serve
from shoal.api.dashboard import ASSETS, CSP
from shoal.config import GossipConfig
from shoal.ring import Ring

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator
    from playwright.sync_api._generated import LocatorAssertions


def _expect(locator: Locator) -> LocatorAssertions:
    """Playwright's ``expect`` with a 30 s timeout. Its checks run in Playwright's own
    world: a ``wait_for_function`` string would be evaluated in the page, where the
    dashboard's Content-Security-Policy forbids ``eval``."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    return expect(locator)


DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
"""Where ``SHOAL_DOCS_SCREENSHOT=1`` puts the screenshots of the docs (dashboard.png,
dashboard-node-killed.png)."""

ADMIN, READ = (f"{role}-{secrets.token_urlsafe(24)}" for role in ("admin", "read"))
DETECTION = GossipConfig.profile("local").detection_bound(3)
"""The documented time within which the survivors mark a crashed member dead."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    yield from watched_page(browser)


def _get(
    port: int, path: str, *, method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _gossip_args(port: int, seed: int) -> list[str]:
    return [
        "--group", "data=helpers.loadlog:load",
        "--gossip-port", str(port), "--join", f"127.0.0.1:{seed}",
        "--gossip-timers", "local",
    ]  # fmt: skip


def _owners(seed: str, keys: list[str]) -> dict[str, str]:
    """The owner of each key as shoal.Client routes it (in a thread of its own: the
    thread of the test runs Playwright's event loop)."""

    async def ask() -> dict[str, str]:
        async with shoal.Client(seed) as client:
            return {key: client.owner(key) for key in keys}

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, ask()).result(timeout=30)


def test_assets_headers_and_tokens(tmp_path: Path) -> None:
    """Every asset is served with its type and the strict headers, open even with
    API tokens, while the data routes the page polls still want the token; only
    GET and HEAD are allowed; the page loads no code inline or from elsewhere."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\nread {READ}\n")
    with shoal_serve("--api-tokens", str(tokens), "--group", "data") as server:
        for path, (body, content_type) in ASSETS.items():
            status, headers, got = _get(server.port, path.decode())
            assert (status, got, headers["content-type"]) == (200, body, content_type), path
            assert headers["content-security-policy"] == CSP
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in CSP
        status, headers, got = _get(server.port, "/ui", method="HEAD")
        assert (status, got, headers["content-length"]) == (200, b"", str(len(ASSETS[b"/ui"][0])))
        status, headers, _ = _get(server.port, "/ui", method="POST")
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        assert _get(server.port, "/ui/config")[2] == b'{"tokens":true}'
        assert _get(server.port, "/ui/missing.js")[0] == 401  # unknown paths stay closed
        assert _get(server.port, "/ui/missing.js", token=READ)[0] == 404
        for data in ("/v1/cluster", "/v1/stats"):
            assert _get(server.port, data)[0] == 401
            assert _get(server.port, data, token=ADMIN)[0] == 200
    page = ASSETS[b"/ui"][0].decode()
    assert "<style" not in page
    assert " style=" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/ui/dashboard.js" defer>']
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    with shoal_serve("--group", "data") as plain:
        assert _get(plain.port, "/ui/config")[2] == b'{"tokens":false}'


def test_the_page_follows_a_three_node_cluster(tmp_path: Path, watched: Watched) -> None:
    """Three gossiping nodes: the page shows the three members, the ring and the
    group's counters; "who owns" agrees with shoal.Client; SIGKILL a node and the
    page shows it gone; no console error throughout. Saves a screenshot."""
    ports = free_ports(3)
    loads = LoadLog(tmp_path / "loads")
    args = [_gossip_args(port, ports[0]) for port in ports]
    page = watched.page
    with shoal_nodes(args, peer_ports=ports, env=loads.env()) as nodes:
        urls = [n.peer_url for n in nodes]
        wait_for(all_see(nodes, urls), "3 members on every node", 10.0)
        for key in ("a", "b", "c", "a", "b"):
            with urllib.request.urlopen(f"{nodes[0].url}/api?key={key}", timeout=5) as answer:
                assert answer.read()

        page.goto(f"{nodes[0].url}/ui")
        rows = page.locator("#members tbody tr")
        for url in urls:
            page.wait_for_selector(f'#members tr[data-url="{url}"][data-state="up"]', timeout=5000)
        assert rows.count() == 3
        assert page.locator("#arcs circle.arc").count() == 3
        shares = [m["share"] for m in json.loads(_get(nodes[0].port, "/v1/cluster")[2])["members"]]
        drawn = page.locator("#legend li").all_inner_texts()
        assert [float(text.split()[-2]) for text in drawn] == [round(100 * s, 1) for s in shares]
        assert page.inner_text("#members tr[data-url] .source") == "gossip"
        group = page.locator('#groups tr[data-group="data"]')
        group.wait_for()
        # The five gets of this node (two of them hits), and its loads.
        _expect(page.locator("#groups [data-stat=gets]").first).to_have_text("5")
        stats = json.loads(_get(nodes[0].port, "/v1/stats")[2])["groups"]["data"]
        assert group.locator("[data-stat=hit-ratio]").inner_text() == (
            f"{100 * stats['hits'] / stats['gets']:.1f} %"
        )
        assert group.locator("[data-stat=loads]").inner_text() == str(stats["loads"])
        assert group.locator("[data-stat=loads-run]").inner_text() == str(stats["loads_run"])
        assert group.locator("[data-stat=main-items]").inner_text() == str(stats["main"]["items"])

        victim = nodes[2]
        ring = Ring.build(urls)
        # Last, a key of the node about to be killed: its owner changes with the ring.
        doomed = next(k for k in (f"key-{n}" for n in range(1000)) if ring.owner(k) == urls[2])
        keys = ["Tom", "a key with spaces/and+slash", "ключ", "a", "b", doomed]
        owners = _owners(nodes[0].url, keys)
        assert len(set(owners.values())) > 1
        assert owners[doomed] == victim.peer_url
        for key in keys:
            page.fill("#owner-key", key)
            page.click("#owner-form button")
            result = page.locator(f'#owner-result[data-key="{key}"]')
            result.wait_for(state="attached")
            assert result.get_attribute("data-owner") == owners[key], key

        screenshot = tmp_path / "dashboard.png"
        page.screenshot(path=screenshot, full_page=True)
        assert screenshot.stat().st_size > 10_000

        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        page.wait_for_selector(
            f'#members tr[data-url="{victim.peer_url}"][data-state="gone"]',
            timeout=(DETECTION + 3) * 1000,
        )
        _expect(page.locator("#arcs circle.arc")).to_have_count(2)
        assert page.locator('#members tr[data-state="up"]').count() == 2
        # The key looked up last is asked again at each poll: its owner on the new ring.
        wait_for(lambda: len(cluster_view(nodes[0])["members"]) == 2, "the new ring", 5.0)
        owner = _owners(nodes[0].url, [doomed])[doomed]
        assert owner in urls[:2]
        page.wait_for_selector(f'#owner-result[data-key="{doomed}"][data-owner="{owner}"]')
        after = tmp_path / "dashboard-node-killed.png"
        page.screenshot(path=after, full_page=True)
        if os.environ.get("SHOAL_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(screenshot, DOCS_IMAGES / screenshot.name)
            shutil.copyfile(after, DOCS_IMAGES / after.name)
    assert watched.errors == []


def test_with_tokens_the_page_asks_for_an_admin_token(tmp_path: Path, watched: Watched) -> None:
    """With API tokens the page asks for a token before it asks for data; a wrong one
    is refused and asked again; an admin token shows the cluster."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\nread {READ}\n")
    (peer,) = free_ports(1)
    page = watched.page
    with shoal_serve("--api-tokens", str(tokens), "--group", "data", "--port", str(peer)) as node:
        page.goto(f"{node.url}/ui")
        page.locator("#token-panel").wait_for()
        assert page.locator("#dashboard").is_hidden()
        assert watched.errors == []  # no request was refused: it asked first
        page.fill("#token", "not-a-token")
        page.click("#token-form button")
        _expect(page.locator("#token-message")).to_contain_text("refused")
        assert page.locator("#dashboard").is_hidden()
        watched.errors.clear()  # the browser logs the 401 of the wrong token
        page.fill("#token", ADMIN)
        page.click("#token-form button")
        page.wait_for_selector(f'#members tr[data-url="http://127.0.0.1:{peer}"][data-state="up"]')
        page.locator('#groups tr[data-group="data"]').wait_for()
        assert page.inner_text("#members tr[data-url] .source") == "static"
        assert page.evaluate("sessionStorage.getItem('shoal.token')") == ADMIN

        # A read token: the counters and the ring, without the cluster's internals.
        page.click("#forget-token")
        page.locator("#token-panel").wait_for()
        assert page.evaluate("sessionStorage.getItem('shoal.token')") is None
        page.fill("#token", READ)
        page.click("#token-form button")
        _expect(page.locator("#membership")).to_contain_text("admin token only")
        page.wait_for_selector(f'#members tr[data-url="http://127.0.0.1:{peer}"][data-state="up"]')
        assert page.inner_text("#members tr[data-url] .source") == "\u2013"  # an en dash: not known
        assert page.locator("#arcs circle.arc").count() == 1
    assert watched.errors == []
