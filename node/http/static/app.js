// The Murmur search page: talks to the node's public API (CONTRACT §2) with fetch() and builds every element with
// the DOM API. Nothing from a tweet or an answer is ever parsed as HTML: text goes in text nodes.
"use strict";

const KEY_STORE = "murmur.apiKey";
const CLUSTER_POLL_MS = 2000;
const TRENDS_POLL_MS = 15000;
const PEER_TIMEOUT_MS = 1500;
const PAGE_COUNT = 20;
const WORD = /([#@]?)([\p{L}\p{N}\p{M}_]+)/gu; // Python's \w+, with the sign that makes a #tag or @mention
const URL_RE = /https?:\/\/\S+/giu;
const FIELD = /^(from|lang|since|until|near|within):/i;

const $ = (id) => document.getElementById(id);
const state = {
  q: "",
  resultType: "recent",
  explain: false,
  nextMaxId: null,
  shown: 0,
  newest: null, // created_at of the newest result shown
  stats: new Map(), // node -> {at stats, ...} of the last poll, for rates
  keyAsked: false,
};

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

// ---------------------------------------------------------------- API access

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

async function api(path, params, { interactive = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  let resp;
  try {
    resp = await fetch(url, { headers, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "unreachable", "the node did not answer (" + e.message + ")", null);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    body = null;
  }
  if (resp.ok) return body;
  const err = (body && body.error) || {};
  const failure = new ApiError(resp.status, err.code || "http_" + resp.status, err.message || resp.statusText, err.field || null);
  if ((resp.status === 401 || resp.status === 403) && interactive) askForKey(failure);
  throw failure;
}

async function peerStats(base) {
  // Another node's /stats, cross-origin (it answers with Access-Control-Allow-Origin: *). No key is sent there.
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), PEER_TIMEOUT_MS);
  try {
    const resp = await fetch(base.replace(/\/$/, "") + "/stats", { signal: ctl.signal, cache: "no-store" });
    return resp.ok ? await resp.json() : null;
  } catch (e) {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- the API key dialog

function askForKey(err) {
  const dlg = $("key-dialog");
  if (dlg.open) return;
  $("key-why").textContent =
    err && err.status === 403
      ? "The key in use has too low a role for that (403 forbidden: " + err.message + "). Enter another key."
      : err
        ? "This node needs an API key for that (401 unauthorized: " + err.message + ")."
        : "The API key this tab sends to the node.";
  $("api-key").value = "";
  state.keyAsked = true;
  dlg.showModal();
  $("api-key").focus();
}

function keyClosed() {
  const how = $("key-dialog").returnValue;
  if (how === "save" && $("api-key").value.trim()) {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  } else if (how === "forget") {
    sessionStorage.removeItem(KEY_STORE);
  } else {
    return;
  }
  showKeyState();
  refreshCluster();
  refreshTrends();
  if (state.q) runSearch(state.q, { push: false });
}

function showKeyState() {
  const b = $("key-button");
  b.textContent = apiKey() ? "key ✓" : "key";
  b.classList.toggle("set", Boolean(apiKey()));
}

// ---------------------------------------------------------------- small DOM helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function searchLink(query, cls, ...children) {
  const a = el("a", { class: cls, href: "/?q=" + encodeURIComponent(query) }, ...children);
  a.addEventListener("click", (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    runSearch(query, { push: true });
  });
  return a;
}

function fmtTime(iso) {
  return iso ? iso.replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC") : "";
}

function fmtNum(n) {
  return typeof n === "number" && isFinite(n) ? n.toLocaleString("en-US") : "?";
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

// ---------------------------------------------------------------- highlighting

function norm(s) {
  return s.normalize("NFKC").toLowerCase();
}

// The positive terms of a query (CONTRACT §3), for highlighting only: the server decides what matches.
function queryTerms(q) {
  const terms = { words: new Set(), tags: new Set(), mentions: new Set() };
  const tokens = q.match(/-?"[^"]*"?|[^\s()]+/g) || [];
  for (const tok of tokens) {
    if (tok.startsWith("-") || tok === "OR" || FIELD.test(tok)) continue;
    const text = norm(tok.replace(URL_RE, " "));
    const quoted = tok.startsWith('"');
    for (const m of text.matchAll(WORD)) {
      if (quoted || m[1] === "") terms.words.add(m[2]);
      else if (m[1] === "#") terms.tags.add(m[2]);
      else terms.mentions.add(m[2]);
    }
  }
  return terms;
}

function appendWords(parent, text, terms) {
  let last = 0;
  for (const m of text.matchAll(WORD)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    last = m.index + m[0].length;
    const w = norm(m[2]);
    if (m[1] === "#") {
      const hit = terms.tags.has(w) || terms.words.has(w);
      parent.append(searchLink("#" + w, "tag" + (hit ? " hit" : ""), hit ? el("mark", {}, m[0]) : m[0]));
    } else if (m[1] === "@") {
      const hit = terms.mentions.has(w) || terms.words.has(w);
      parent.append(searchLink("@" + w, "mention" + (hit ? " hit" : ""), hit ? el("mark", {}, m[0]) : m[0]));
    } else if (terms.words.has(w)) {
      parent.append(el("mark", {}, m[0]));
    } else {
      parent.append(m[0]);
    }
  }
  if (last < text.length) parent.append(text.slice(last));
}

function renderText(text, terms) {
  const p = el("p", { class: "text" });
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    appendWords(p, text.slice(last, m.index), terms);
    p.append(el("a", { class: "url", href: m[0], rel: "noopener noreferrer nofollow", target: "_blank" }, m[0]));
    last = m.index + m[0].length;
  }
  appendWords(p, text.slice(last), terms);
  return p;
}

// ---------------------------------------------------------------- search

function renderTweet(t, terms) {
  const head = el(
    "div",
    { class: "head" },
    searchLink("from:" + t.user, "user", "@" + t.user),
    el("a", { class: "time", href: "/tweets/" + t.id_str, title: t.created_at }, fmtTime(t.created_at)),
    t.edited_at ? el("span", { class: "edited", title: "edited " + t.edited_at }, "edited") : null,
    t.lang ? el("span", { class: "lang" }, t.lang) : null,
  );
  const foot = el(
    "div",
    { class: "foot" },
    el("span", { class: "likes", title: "likes" }, "♥ " + fmtNum(t.likes)),
    el("span", { class: "retweets", title: "retweets" }, "⟲ " + fmtNum(t.retweets)),
    t.reply_to !== null && t.reply_to !== undefined ? el("span", { class: "reply" }, "reply") : null,
    t.geo ? el("span", { class: "geo" }, t.geo.lat.toFixed(3) + ", " + t.geo.lon.toFixed(3)) : null,
  );
  return el("li", { class: "tweet", dataset: { id: t.id_str } }, head, renderText(t.text, terms), foot);
}

function showError(err) {
  const box = $("error");
  box.replaceChildren(
    el("strong", {}, err.code === "invalid_query" ? "Invalid query" : "Error " + (err.status || "") + " " + err.code),
    ": ",
    el("span", { class: "message" }, err.message),
  );
  box.dataset.code = err.code;
  box.hidden = false;
}

function clearResults() {
  $("results").replaceChildren();
  delete $("results").dataset.query;
  $("stages").replaceChildren();
  $("stages").hidden = true;
  $("meta").replaceChildren();
  $("more").hidden = true;
  state.shown = 0;
  state.newest = null;
}

async function runSearch(q, { push = true, maxId = null } = {}) {
  q = q.trim();
  if (!q) return;
  state.q = q;
  state.resultType = $("result-type").value;
  state.explain = $("explain").checked;
  $("q").value = q;
  if (push) {
    const u = new URL("/", location.origin);
    u.searchParams.set("q", q);
    if (state.resultType !== "recent") u.searchParams.set("result_type", state.resultType);
    history.pushState({ q }, "", u);
  }
  $("error").hidden = true;
  $("intro").hidden = true;
  document.body.classList.add("busy");
  if (maxId === null) clearResults();
  let body;
  try {
    body = await api(
      "/search",
      { q, count: PAGE_COUNT, result_type: state.resultType, max_id: maxId, explain: state.explain ? "true" : null },
      { interactive: true },
    );
  } catch (err) {
    if (maxId === null) clearResults();
    showError(err);
    $("results").dataset.query = q;
    $("results").dataset.shown = String(state.shown);
    return;
  } finally {
    document.body.classList.remove("busy");
  }
  const terms = queryTerms(q);
  const list = $("results");
  for (const t of body.statuses) list.append(renderTweet(t, terms));
  if (state.newest === null && body.statuses.length) state.newest = body.statuses[0].created_at;
  state.shown += body.statuses.length;
  list.dataset.query = q; // for tests and scripts: which query the list shows, and how many
  list.dataset.shown = String(state.shown);
  const meta = body.search_metadata;
  state.nextMaxId = meta.next_max_id_str || null;
  $("more").hidden = state.nextMaxId === null;
  $("meta").replaceChildren(
    el(
      "span",
      {},
      el("span", { class: "count" }, state.shown ? fmtNum(state.shown) + " shown" : "No tweets match."),
      " · " + meta.result_type + " · " + meta.completed_in_ms + " ms on " + meta.coordinator,
      meta.partial ? el("span", { class: "partial", title: "some partition could not answer with R replicas in time" }, " · partial") : null,
    ),
  );
  if (meta.stages) {
    const st = $("stages");
    st.replaceChildren(
      ...Object.entries(meta.stages).map(([name, ms]) => el("li", { dataset: { stage: name } }, el("span", {}, name), " " + ms + " ms")),
    );
    st.hidden = false;
  }
}

// ---------------------------------------------------------------- trends

async function refreshTrends() {
  const note = $("trends-note");
  const asOf = $("as-of").value.trim();
  const win = $("trend-window").value;
  let body;
  try {
    body = await api("/trends", { window: win, count: 10, as_of: asOf || null }, { interactive: !state.keyAsked });
  } catch (err) {
    note.textContent = err.status === 401 || err.status === 403 ? "Trends need an API key." : "Trends: " + err.message;
    return;
  }
  $("trend-list").replaceChildren(
    ...body.trends.map((t) =>
      el("li", {}, searchLink(t.hashtag, "trend", t.hashtag), el("span", { class: "n" }, fmtNum(t.count))),
    ),
  );
  note.textContent = body.trends.length
    ? "window " + body.window + " ending " + fmtTime(body.as_of)
    : "No hashtags in the " + body.window + " before " + fmtTime(body.as_of) +
      ". For an imported corpus, set “as of” to a time inside it (the button takes the newest result's).";
}

// ---------------------------------------------------------------- cluster panel

function rate(prev, cur, field) {
  if (!prev || !cur || cur.uptime_s <= prev.uptime_s) return null;
  return Math.max(0, (cur[field] - prev[field]) / (cur.uptime_s - prev.uptime_s));
}

async function refreshCluster() {
  const note = $("cluster-note");
  let cl, health;
  try {
    const ask = { interactive: !state.keyAsked }; // ask for a key once by itself; later only on the user's action
    [cl, health] = await Promise.all([api("/cluster", null, ask), api("/health")]);
  } catch (err) {
    note.textContent =
      err.status === 401 || err.status === 403 ? "The cluster view needs an API key (use the key button)." : "Cluster: " + err.message;
    $("members").tBodies[0].querySelectorAll("tr").forEach((tr) => tr.classList.add("stale"));
    return;
  }
  const members = cl.members || [];
  const stats = await Promise.all(
    members.map((m) => {
      if (m.name === cl.coordinator) return api("/stats").catch(() => null);
      if (m.http && (m.state === "alive" || m.state === "suspect")) return peerStats(m.http);
      return Promise.resolve(null);
    }),
  );
  $("cluster-name").textContent = cl.cluster || "";
  const rows = [];
  let searchRate = 0;
  let ingestRate = 0;
  let ratesKnown = false;
  let mine = null;
  members.forEach((m, i) => {
    const s = stats[i];
    const prev = state.stats.get(m.name);
    const sr = rate(prev, s, "searches_total");
    const ir = rate(prev, s, "ingested_total");
    if (s) state.stats.set(m.name, s);
    if (sr !== null) {
      searchRate += sr;
      ingestRate += ir;
      ratesKnown = true;
    }
    if (m.name === cl.coordinator) mine = s;
    const parts = m.partitions ? m.partitions.replicated + "/" + m.partitions.total : "?";
    const ring = m.ring && m.ring !== "normal" ? " (" + m.ring + ")" : "";
    rows.push(
      el(
        "tr",
        { dataset: { node: m.name, state: m.state }, class: "state-" + m.state + (m.name === cl.coordinator ? " me" : "") },
        el("td", { class: "name" }, m.http ? el("a", { href: m.http + "/" }, m.name) : m.name),
        el("td", { class: "state" }, el("span", { class: "badge " + m.state }, m.state + ring)),
        el("td", { class: "num" }, typeof m.ring_share === "number" ? (m.ring_share * 100).toFixed(1) + "%" : "?"),
        el("td", { class: "num" }, parts),
        el("td", { class: "num" }, fmtNum(s ? s.tweets : m.tweets)),
        el("td", { class: "num" }, fmtRate(sr)),
        el("td", { class: "num" }, fmtRate(ir)),
        el("td", { class: "num" }, s ? fmtNum(s.hints_pending_records) : "–"),
        el("td", { class: "num" }, s ? fmtNum(s.replication_lag_records) : "–"),
      ),
    );
  });
  $("members").tBodies[0].replaceChildren(...rows);
  const p = mine && mine.partitions;
  const status = health.status || "?";
  const bits = [
    el("span", { class: "badge " + (status === "ok" ? "alive" : "suspect"), id: "health-status" }, status),
    " N=" + cl.n + " W=" + cl.w + " R=" + cl.r,
    cl.topology !== undefined ? " · topology v" + cl.topology : null,
    cl.change ? el("span", { class: "change" }, " · " + cl.change) : null,
  ];
  if (health.down && health.down.length) bits.push(el("span", { class: "down" }, " · down: " + health.down.join(", ")));
  const line2 = el(
    "div",
    { id: "partition-health" },
    p
      ? "partitions: " + p.all_replicas_up + "/" + p.total + " with every replica up" +
          (p.under_replicated ? ", " + p.under_replicated + " under-replicated" : "") +
          (p.below_write_quorum ? ", " + p.below_write_quorum + " below W" : "") +
          (p.below_read_quorum ? ", " + p.below_read_quorum + " below R (searches partial)" : "")
      : "partitions: ?",
  );
  const line3 = el(
    "div",
    { id: "rates" },
    ratesKnown ? "cluster: " + fmtRate(searchRate) + " searches/s, " + fmtRate(ingestRate) + " tweets/s ingested" : "rates: after the next poll",
  );
  $("cluster-summary").replaceChildren(el("div", {}, ...bits), line2, line3);
  note.textContent = "refreshed " + new Date().toLocaleTimeString() + " from " + cl.coordinator;
}

// ---------------------------------------------------------------- wiring

function fromUrl() {
  const params = new URLSearchParams(location.search);
  const rt = params.get("result_type");
  if (rt && ["recent", "popular", "mixed"].includes(rt)) $("result-type").value = rt;
  const q = params.get("q");
  if (q) runSearch(q, { push: false });
  else {
    clearResults();
    state.q = "";
    $("q").value = "";
    $("intro").hidden = false;
    $("error").hidden = true;
  }
}

function start() {
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    runSearch($("q").value, { push: true });
  });
  $("result-type").addEventListener("change", () => state.q && runSearch(state.q, { push: true }));
  $("explain").addEventListener("change", () => state.q && runSearch(state.q, { push: false }));
  $("more").addEventListener("click", () => state.nextMaxId && runSearch(state.q, { push: false, maxId: state.nextMaxId }));
  $("trend-window").addEventListener("change", refreshTrends);
  $("as-of").addEventListener("change", refreshTrends);
  $("as-of-newest").addEventListener("click", () => {
    if (state.newest) {
      $("as-of").value = state.newest;
      refreshTrends();
    }
  });
  $("key-button").addEventListener("click", () => askForKey(null));
  $("key-dialog").addEventListener("close", keyClosed);
  window.addEventListener("popstate", fromUrl);
  showKeyState();
  fromUrl();
  refreshTrends();
  refreshCluster();
  setInterval(refreshCluster, CLUSTER_POLL_MS);
  setInterval(refreshTrends, TRENDS_POLL_MS);
}

start();
