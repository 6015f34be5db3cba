// The live dashboard of a shoal node: polls /v1/cluster and /v1/stats of the node
// that serves this page and draws them. Plain JavaScript, no dependencies; every
// value from the node is put in the page as text, never as markup.
"use strict";

(function () {
  const POLL_MS = 1000;
  const REQUEST_MS = 3000;
  const TOKEN_KEY = "shoal.token";
  const SVG = "http://www.w3.org/2000/svg";
  const RADIUS = 72;
  const CIRCUMFERENCE = 2 * Math.PI * RADIUS;
  const OWNER_RADIUS = 93;
  const PALETTE = [
    "#2a7ab0", "#e0803a", "#3a9d5d", "#c4475a", "#8a63b8",
    "#b0892a", "#3aa6a6", "#d067a8", "#6b7d3a", "#5a6fd0",
  ];

  const state = {
    tokens: false,
    token: sessionStorage.getItem(TOKEN_KEY),
    known: new Map(), // url -> {member, gone: false | Date}
    colours: new Map(), // url -> colour, stable for the page's life
    previous: null, // {at, groups} of the last poll, for rates
    owner: null, // {key, url} of the last lookup
    timer: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) {
      node.setAttribute(name, String(value));
    }
    return node;
  }

  function colour(url) {
    if (!state.colours.has(url)) {
      state.colours.set(url, PALETTE[state.colours.size % PALETTE.length]);
    }
    return state.colours.get(url);
  }

  function swatch(url) {
    const box = svg("svg", { class: "swatch", viewBox: "0 0 10 10", width: 10, height: 10 });
    box.append(svg("rect", { width: 10, height: 10, rx: 2, fill: colour(url) }));
    return box;
  }

  function percent(fraction) {
    return (100 * fraction).toFixed(1) + " %";
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = -1;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(1) + " " + units[unit];
  }

  function count(n) {
    return Number(n).toLocaleString("en-US");
  }

  function setStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.dataset.state = kind;
  }

  // -- requests -------------------------------------------------------------------

  class Refused extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function fetchJson(path) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_MS);
    try {
      const response = await fetch(path, { headers, signal: abort.signal, cache: "no-store" });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401 || response.status === 403) {
        throw new Refused(response.status, body.error || "refused");
      }
      if (!response.ok) {
        throw new Error(path + ": HTTP " + response.status + " " + (body.error || ""));
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // -- the token ------------------------------------------------------------------

  function askForToken(message) {
    stopPolling();
    $("dashboard").hidden = true;
    $("token-panel").hidden = false;
    $("token-message").textContent = message;
    setStatus("needs a token", "error");
    $("token").focus();
  }

  $("forget-token").addEventListener("click", () => {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken("Give the token to use from now on (an admin token shows everything).");
  });

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("token-panel").hidden = true;
    startPolling();
  });

  // -- members and ring ---------------------------------------------------------------

  function renderOwner(cluster, key) {
    const result = $("owner-result");
    // A poll that asked for an older key (or none) leaves the answer alone.
    if (!state.owner || key !== state.owner.key || !("owner" in cluster)) return;
    state.owner.url = cluster.owner;
    result.textContent = cluster.owner || "this node (alone)";
    result.dataset.owner = cluster.owner || "";
    result.dataset.key = state.owner.key;
  }

  function renderCluster(cluster, key) {
    $("node").textContent = cluster.self || "a node alone (no peers)";
    renderOwner(cluster, key);
    const now = new Date();
    const current = new Set();
    for (const member of cluster.members) {
      current.add(member.url);
      state.known.set(member.url, { member, gone: false });
      colour(member.url);
    }
    for (const [url, entry] of state.known) {
      if (!current.has(url) && !entry.gone) entry.gone = now;
    }

    renderMembership(cluster.membership);

    const rows = [];
    for (const [url, { member, gone }] of state.known) {
      const health = gone ? "gone" : member.backing_off ? "backing-off" : "up";
      const label = el("td", { class: "health" }, gone ? "gone" : member.backing_off ? "backing off" : "up");
      if (gone) label.append(el("div", { class: "muted small" }, "since " + gone.toLocaleTimeString()));
      if (member.backing_off && !gone) label.title = "a fetch from it failed: it is skipped for a while";
      const name = el("td", { class: "url" }, swatch(url), url);
      if (member.self) name.append(el("span", { class: "badge" }, "this node"));
      const requests = member.client ? count(member.client.requests) : member.self ? "" : "–";
      rows.push(
        el("tr", { "data-url": url, "data-state": health },
          name,
          el("td", {}, member.node_id || "–"),
          el("td", { class: "source" }, member.source || "–"),
          el("td", { class: "num" }, gone ? "–" : percent(member.share)),
          label,
          el("td", { class: "num" }, requests)),
      );
    }
    $("members").tBodies[0].replaceChildren(...rows);
    renderRing(cluster);
  }

  function renderMembership(membership) {
    const summary = $("membership");
    const details = $("membership-counters");
    if (!membership) {
      summary.textContent = "membership state and sources are shown to an admin token only";
      details.replaceChildren();
      return;
    }
    const parts = ["membership: " + membership.source];
    const counters = [];
    for (const [name, value] of Object.entries(membership)) {
      if (name === "source") continue;
      if (value !== null && typeof value === "object") {
        const text = Object.entries(value).map(([k, v]) => k + "=" + v).join(" ");
        if (name === "states") parts.push(text);
        else counters.push(name + ": " + text);
      } else if (name === "address" || name === "members" || name === "error") {
        parts.push(name + " " + value);
      } else {
        counters.push(name + "=" + value);
      }
    }
    summary.textContent = parts.join(" · ");
    details.replaceChildren(
      el("summary", {}, "counters"), el("p", { class: "muted small" }, counters.join(" · ")),
    );
    details.hidden = counters.length === 0;
  }

  function renderRing(cluster) {
    const ring = cluster.ring || {};
    $("ring-info").textContent =
      "flavour " + (ring.flavour || "?") + " · " + (ring.replicas || "?") +
      " points per member · each arc is a member's share of the key space";
    const arcs = [];
    const legend = [];
    let start = 0;
    for (const member of cluster.members) {
      const length = member.share * CIRCUMFERENCE;
      const arc = svg("circle", {
        class: "arc", cx: 100, cy: 100, r: RADIUS,
        stroke: colour(member.url),
        "stroke-dasharray": length + " " + (CIRCUMFERENCE - length),
        "stroke-dashoffset": -start,
        "data-url": member.url,
      });
      const title = svg("title", {});
      title.textContent = member.url + ": " + percent(member.share);
      arc.append(title);
      arcs.push(arc);
      if (state.owner && state.owner.url === member.url) {
        arcs.push(svg("circle", {
          class: "owner-mark", cx: 100, cy: 100, r: OWNER_RADIUS,
          stroke: colour(member.url),
          "stroke-dasharray": (length * OWNER_RADIUS) / RADIUS + " " + 2 * Math.PI * OWNER_RADIUS,
          "stroke-dashoffset": (-start * OWNER_RADIUS) / RADIUS,
        }));
      }
      start += length;
      legend.push(el("li", { "data-url": member.url }, swatch(member.url),
        member.url + " " + percent(member.share)));
    }
    $("arcs").replaceChildren(...arcs);
    $("legend").replaceChildren(...legend);
    $("ring-count").textContent = String(cluster.members.length);
  }

  // -- who owns a key -------------------------------------------------------------------

  $("owner-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("owner-key").value;
    const result = $("owner-result");
    if (!key) return;
    result.textContent = "…";
    delete result.dataset.owner;
    delete result.dataset.key;
    state.owner = { key, url: null };
    try {
      const cluster = await fetchJson("/v1/cluster?key=" + encodeURIComponent(key));
      renderCluster(cluster, key);
    } catch (error) {
      if (error instanceof Refused) {
        askForToken(error.message);
      } else {
        result.textContent = "lookup failed: " + error.message;
      }
    }
  });

  // -- groups ---------------------------------------------------------------------

  function renderGroups(stats, at) {
    const previous = state.previous;
    const rows = [];
    for (const [name, group] of Object.entries(stats.groups)) {
      let rate = "–";
      if (previous && previous.groups[name]) {
        const seconds = (at - previous.at) / 1000;
        if (seconds > 0) rate = ((group.gets - previous.groups[name].gets) / seconds).toFixed(1);
      }
      const ratio = group.gets ? percent(group.hits / group.gets) : "–";
      const main = group.main;
      const hot = group.hot;
      rows.push(
        el("tr", { "data-group": name },
          el("td", {}, name),
          el("td", {}, group.mode),
          el("td", { "data-stat": "gets" }, count(group.gets)),
          el("td", { "data-stat": "rate" }, rate),
          el("td", { "data-stat": "hit-ratio" }, ratio),
          el("td", { "data-stat": "loads" }, count(group.loads)),
          el("td", { "data-stat": "loads-run" }, count(group.loads_run ?? group.loads_deduped)),
          el("td", { "data-stat": "peer-loads" }, count(group.peer_loads)),
          el("td", { "data-stat": "peer-errors" }, count(group.peer_errors)),
          el("td", { "data-stat": "main-bytes" }, bytes(main.bytes)),
          el("td", { "data-stat": "main-items" }, count(main.items)),
          el("td", { "data-stat": "main-evictions" }, count(main.evictions)),
          el("td", { "data-stat": "hot-bytes" }, bytes(hot.bytes)),
          el("td", { "data-stat": "hot-items" }, count(hot.items)),
          el("td", { "data-stat": "hot-evictions" }, count(hot.evictions))),
      );
    }
    $("groups").tBodies[0].replaceChildren(...rows);
    state.previous = { at, groups: stats.groups };
  }

  // -- polling ------------------------------------------------------------------------

  async function poll() {
    state.timer = null;
    try {
      // With a key looked up, each poll asks its owner again: it moves when members do.
      const key = state.owner ? state.owner.key : null;
      const query = key !== null ? "?key=" + encodeURIComponent(key) : "";
      const [cluster, stats] = await Promise.all([
        fetchJson("/v1/cluster" + query),
        fetchJson("/v1/stats"),
      ]);
      renderCluster(cluster, key);
      renderGroups(stats, Date.now());
      $("dashboard").hidden = false;
      setStatus("updated " + new Date().toLocaleTimeString(), "ok");
    } catch (error) {
      if (error instanceof Refused) {
        askForToken(
          error.status === 403
            ? "This token's role does not allow reading the cluster: give an admin token."
            : state.token
              ? "The token was refused: give an admin token."
              : "This node has API tokens: give an admin token to see the cluster.",
        );
        return;
      }
      setStatus("node unreachable: " + error.message, "error");
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  function startPolling() {
    stopPolling();
    poll();
  }

  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  async function start() {
    try {
      const config = await fetchJson("/ui/config");
      state.tokens = Boolean(config.tokens);
    } catch (error) {
      setStatus("node unreachable: " + error.message, "error");
      setTimeout(start, POLL_MS);
      return;
    }
    $("forget-token").hidden = !state.tokens;
    if (state.tokens && !state.token) {
      askForToken("This node has API tokens: give an admin token to see the cluster.");
      return;
    }
    startPolling();
  }

  start();
})();
