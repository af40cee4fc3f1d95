// The Relay fleet dashboard: polls the gateway's /v1/fleet routes (paged server-side) once a second with
// the bearer token kept in this tab's sessionStorage. Every value goes into the page as text, never HTML.
"use strict";

const TOKEN_KEY = "relay-gateway-token";
const POLL_MS = 1000;
const DEAD_LETTERS_EVERY = 3;  // polls between two reads of the dead letters
const EVENTS_SHOWN = 50;
const PAGE = 50;
const DL_PAGE = 20;
const MOVED_MS = 10000;  // a server whose owner changed is highlighted this long

const view = { offset: 0, dlOffset: 0, after: null, events: [], applied: new Map(), owners: new Map(), ticks: 0,
               timer: null, busy: false };

class Unauthorized extends Error {}

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.text : `${response.status} ${response.statusText}`);
  return body;
}

const node = (host) => (host || "").split("#")[0];
const mib = (n) => (n == null ? "–" : `${(n / 1048576).toFixed(1)} MiB`);
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function showHosts(hosts) {
  fill($("hosts").tBodies[0], hosts.map((h) => el("tr", { "data-host": h.id, class: h.live ? "" : "dead" },
    el("td", { "data-field": "node" }, h.node), el("td", { class: "mono" }, h.id.slice(h.node.length)),
    el("td", { class: "num", "data-field": "heartbeat" }, `${h.heartbeat_age.toFixed(1)} s${h.live ? "" : " (dead)"}`),
    el("td", { class: "num", "data-field": "memory" }, mib(h.memory_bytes)),
    el("td", { class: "num", "data-field": "servers" }, h.servers), el("td", { class: "num" }, h.leases))));
}

function showOverview(o) {
  showHosts(o.hosts);
  fill($("families").tBodies[0], o.top_families.map((f) => el("tr", { "data-family": f.family },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); setFamily(f.family); } }, f.family)),
    el("td", { class: "num" }, f.servers))));
  $("family-count").textContent = `(${o.families}; largest ${o.top_families.length})`;
  const live = o.hosts.filter((h) => h.live).length;
  $("summary").textContent = `${o.servers} servers · ${live}/${o.hosts.length} hosts live · ` +
    `${o.dead_letters} dead letters · index ${o.index_age.toFixed(1)} s old`;
}

function rate(s, now) {
  const seen = view.applied.get(s.name);
  view.applied.set(s.name, { n: s.messages_applied, t: now });
  if (!seen || now - seen.t < 0.5 || s.messages_applied < seen.n) return "–";
  return ((s.messages_applied - seen.n) / (now - seen.t)).toFixed(1);
}

function serverRow(s, now) {
  const seen = view.owners.get(s.name);
  const movedAt = seen && seen.owner !== s.owner ? Date.now() : (seen ? seen.movedAt : 0);
  view.owners.set(s.name, { owner: s.owner, movedAt });
  return el("tr", { "data-server": s.name, class: Date.now() - movedAt < MOVED_MS ? "moved" : "" },
    el("td", { class: "mono", "data-field": "name" }, s.name), el("td", {}, s.family),
    el("td", { "data-field": "owner" }, s.owner || "–"),
    el("td", { class: `status-${s.status}`, "data-field": "status" }, s.status),
    el("td", { class: "num", "data-field": "queued" }, s.queued),
    el("td", { class: "num", "data-field": "rate" }, rate(s, now)),
    el("td", { class: "num" }, s.messages_applied),
    el("td", { class: "num", "data-field": "restarts" }, s.restarts), el("td", { class: "num" }, s.version),
    el("td", { class: "reason error", "data-field": "error" }, s.reason));
}

function showServers(page) {
  const now = performance.now() / 1000;
  fill($("servers").tBodies[0], page.servers.map((s) => serverRow(s, now)));
  const shown = new Set(page.servers.map((s) => s.name));
  for (const seen of [view.applied, view.owners]) {  // remember only the rows on the page
    for (const name of seen.keys()) if (!shown.has(name)) seen.delete(name);
  }
  const last = Math.min(page.offset + page.limit, page.matched);
  $("matched").textContent = `(${page.matched} of ${page.total})`;
  $("rows").textContent = page.matched ? `${page.offset + 1}–${last} of ${page.matched}` : "none";
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.matched;
  $("by-status").replaceChildren(...Object.entries(page.by_status).sort().map(([k, n]) =>
    el("span", { class: `status-${k}` }, `${k} ${n}`)));
}

function describeEvent(e) {
  if (e.kind === "failover") return `failover: ${e.server} ${node(e.from_host) || "?"} → ${node(e.to_host)}`;
  if (e.kind === "failed") return `failed: ${e.server} (${e.reason})`;
  if (e.kind === "host dead") return `host dead: ${e.host}`;
  return `${e.kind}: ${e.server || e.host}`;
}

function showEvents(page) {
  view.after = page.last || view.after;
  if (!page.events.length && view.events.length) return;
  view.events = page.events.slice().reverse().concat(view.events).slice(0, EVENTS_SHOWN);
  fill($("events"), view.events.map((e) => el("li", { class: e.kind.replace(" ", "-"), "data-kind": e.kind,
    "data-server": e.server }, `${clock(e.time)} ${describeEvent(e)}`)));
  if (!view.events.length) fill($("events"), [el("li", { class: "hint" }, "none yet")]);
}

function letterRow(d) {
  const what = d.replayable ? `${d.server}.${d.handler}(${d.args.map((a) => JSON.stringify(a)).join(", ")})`
    : `${d.queue}: ${d.raw.slice(0, 120)}`;
  const button = el("button", { type: "button", disabled: !d.replayable, "data-replay": d.id,
    title: d.replayable ? "send this message again to its server" : "not a message to a server: cannot be replayed",
    onclick: () => replay(d.id, button) }, "Replay");
  return el("tr", { "data-letter": d.id }, el("td", {}, clock(d.time)), el("td", { class: "mono" }, what),
    el("td", { class: "reason", "data-field": "reason" }, d.reason), el("td", { class: "num" }, d.attempts ?? ""),
    el("td", {}, button));
}

function showDeadLetters(page) {
  fill($("dead-letters").tBodies[0], page.letters.map(letterRow));
  const last = Math.min(page.offset + page.limit, page.total);
  $("dl-count").textContent = `(${page.total})`;
  $("dl-rows").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "none";
  $("dl-prev").disabled = page.offset === 0;
  $("dl-next").disabled = last >= page.total;
}

async function replay(id, button) {
  button.disabled = true;
  try {
    const done = await api(`/v1/dead-letters/${encodeURIComponent(id)}/replay`, { method: "POST" });
    notice(`replayed to ${done.server}.${done.handler} as message ${done.message_id}`);
    showDeadLetters(await api(deadLettersPath()));
  } catch (err) {
    failed(err);
    button.disabled = false;
  }
}

function serversPath() {
  const q = new URLSearchParams({ limit: PAGE, offset: view.offset });
  for (const [name, id] of [["prefix", "f-prefix"], ["family", "f-family"], ["status", "f-status"], ["owner", "f-owner"]]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  return `/v1/fleet/servers?${q}`;
}

const deadLettersPath = () => `/v1/fleet/dead-letters?limit=${DL_PAGE}&offset=${view.dlOffset}`;
const eventsPath = () => `/v1/fleet/events${view.after ? `?after=${encodeURIComponent(view.after)}` : ""}`;

function notice(text) { $("notice").textContent = text; }

function failed(err) {
  if (err instanceof Unauthorized) return signIn(token() ? "the token was refused" : "");
  notice(`error: ${err.message}`);
}

async function tick() {
  if (view.busy) return;
  view.busy = true;
  try {
    const dead = view.ticks++ % DEAD_LETTERS_EVERY === 0;
    const [o, servers, events, letters] = await Promise.all([api("/v1/fleet"), api(serversPath()), api(eventsPath()),
      dead ? api(deadLettersPath()) : null]);
    showOverview(o);
    showServers(servers);
    showEvents(events);
    if (letters) showDeadLetters(letters);
    if ($("notice").textContent.startsWith("error:")) notice("");
  } catch (err) {
    failed(err);
  } finally {
    view.busy = false;
  }
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !token();
  clearInterval(view.timer);
  view.timer = setInterval(tick, POLL_MS);
  tick();
}

function signIn(why) {
  clearInterval(view.timer);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  $("token").focus();
}

function refilter() {
  view.offset = 0;
  tick();
}

function setFamily(family) {
  $("f-family").value = family;
  refilter();
}

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); signIn("signed out"); });
  let pause = null;
  $("filters").addEventListener("input", () => { clearTimeout(pause); pause = setTimeout(refilter, 250); });
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); tick(); });
  $("next").addEventListener("click", () => { view.offset += PAGE; tick(); });
  $("dl-prev").addEventListener("click", () => { view.dlOffset = Math.max(0, view.dlOffset - DL_PAGE); view.ticks = 0; tick(); });
  $("dl-next").addEventListener("click", () => { view.dlOffset += DL_PAGE; view.ticks = 0; tick(); });
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  start();  // without a token the first answer is a 401 (unless the gateway runs --insecure): then sign in
});
