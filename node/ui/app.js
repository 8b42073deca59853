// Shoal dashboard. Plain JavaScript, no dependencies: it reads the state the
// agent pushes on /ui/v1/stream (server-sent events, read with fetch so the
// token travels in a header, never in a cookie or the URL) and renders it
// with DOM calls (textContent only: nothing from the cluster is parsed as
// HTML). Buttons POST to the agent's scale and node-update handlers.
"use strict";

const TOKEN_KEY = "shoal-ui-token";
const $ = (sel) => document.querySelector(sel);

let state = null;
// Values typed into a service's replicas box survive re-renders.
const typed = new Map();

function token() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
}

function headers(extra) {
  const h = Object.assign({ "X-Shoal-UI": "1" }, extra || {});
  const t = token();
  if (t) h["X-Shoal-UI-Token"] = t;
  return h;
}

class AuthError extends Error {}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (res.status === 401) throw new AuthError(await errorText(res));
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

async function errorText(res) {
  try { const j = await res.json(); return j.error || res.statusText; } catch (e) { return res.statusText; }
}

function showError(msg) {
  const el = $("#error");
  el.textContent = msg;
  el.classList.toggle("hidden", !msg);
}

function setLive(on, text) {
  const el = $("#live");
  el.classList.toggle("on", on);
  el.classList.toggle("off", !on);
  el.textContent = text;
}

function showLogin(msg) {
  $("#main").classList.add("hidden");
  $("#login").classList.remove("hidden");
  setLive(false, "locked");
  showError(msg || "");
  $("#token").focus();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// stream reads the event stream until it ends, then reconnects.
async function stream() {
  for (;;) {
    try {
      const res = await fetch("/ui/v1/stream", { headers: headers(), credentials: "omit", cache: "no-store" });
      if (res.status === 401) { showLogin(await errorText(res)); return; }
      if (!res.ok) throw new Error(await errorText(res));
      setLive(true, "live");
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          handleEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      showError("connection lost: " + e.message);
    }
    setLive(false, "reconnecting");
    await sleep(1000);
  }
}

function handleEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (name !== "state" || data.length === 0) return;
  state = JSON.parse(data.join("\n"));
  showError("");
  render();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function pill(text) {
  return el("span", "pill " + (text || "none"), text || "—");
}

function cpus(nano) { return nano ? (nano / 1e9).toFixed(nano % 1e9 ? 1 : 0) : "—"; }

function bytes(n) {
  if (!n) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(n < 10 && i > 0 ? 1 : 0) + " " + units[i];
}

function render() {
  $("#login").classList.add("hidden");
  $("#main").classList.remove("hidden");
  const s = state;
  $("#cluster").textContent = s.joined
    ? "cluster " + s.cluster_id.slice(0, 12) + " · via " + s.hostname + " · index " + s.index
    : s.hostname + " is not in a cluster";
  renderNodes(s);
  renderServices(s);
}

function renderNodes(s) {
  const body = $("#nodes tbody");
  const rows = s.nodes.map((n) => {
    const tr = el("tr", "node");
    tr.dataset.id = n.id;
    tr.dataset.hostname = n.hostname;
    tr.dataset.status = n.status;
    tr.dataset.availability = n.availability;
    const name = el("td", "hostname", n.hostname);
    if (n.id === s.node_id) name.append(el("span", "muted", " (this node)"));
    tr.append(name);
    const cells = [pill(n.status), pill(n.availability), n.role, pill(n.manager_status),
      n.version, cpus(n.resources.nano_cpus), bytes(n.resources.memory_bytes), n.running, n.addr];
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.append(c); else td.textContent = String(c);
      tr.append(td);
    }
    const td = el("td");
    const draining = n.availability === "drain";
    const b = el("button", draining ? "activate" : "drain", draining ? "Activate" : "Drain");
    b.title = draining ? "let the scheduler place tasks here again" : "move this node's tasks elsewhere";
    b.addEventListener("click", () => act(b, "/ui/v1/nodes/" + encodeURIComponent(n.id) + "/update",
      { availability: draining ? "active" : "drain" }));
    td.append(b);
    tr.append(td);
    return tr;
  });
  body.replaceChildren(...rows);
  $("#node-count").textContent = "(" + s.nodes.length + ")";
}

function renderServices(s) {
  const box = $("#services");
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.service : undefined;
  const cards = s.services.map((svc) => {
    const card = el("div", "service");
    card.dataset.name = svc.name;
    card.dataset.id = svc.id;
    const head = el("div", "service-head");
    head.append(el("h3", "name", svc.name));
    const count = el("span", "count" + (svc.running < svc.replicas ? " short" : ""), svc.running + "/" + svc.replicas);
    count.title = "running / desired";
    head.append(count, el("span", "muted", svc.image), el("span", "muted", svc.mode));
    if (svc.vip) head.append(el("span", "muted", "VIP " + svc.vip));
    if (svc.update) head.append(pill(svc.update));
    if (svc.mode === "replicated") head.append(scaleControls(svc));
    card.append(head);
    const placement = el("div", "placement");
    for (const g of svc.placement) {
      const box = el("div", "node-tasks");
      box.dataset.node = g.node_id;
      box.append(el("h4", "", g.node_id ? g.hostname : "not placed yet"));
      const ul = el("ul");
      for (const t of g.tasks) {
        const li = el("li", "task");
        li.dataset.id = t.id;
        li.dataset.state = t.state;
        li.append(el("span", "task-name", t.name), pill(t.state));
        if (t.ip) li.append(el("span", "ip", t.ip));
        if (t.error) li.title = t.error;
        ul.append(li);
      }
      box.append(ul);
      placement.append(box);
    }
    card.append(placement);
    return card;
  });
  box.replaceChildren(...cards);
  $("#no-services").classList.toggle("hidden", s.services.length > 0);
  $("#service-count").textContent = "(" + s.services.length + ")";
  if (focused) {
    const input = box.querySelector('input[data-service="' + CSS.escape(focused) + '"]');
    if (input) input.focus();
  }
}

function scaleControls(svc) {
  const wrap = el("span", "scale");
  const url = "/ui/v1/services/" + encodeURIComponent(svc.id) + "/scale";
  const down = el("button", "scale-down", "−");
  down.title = "one replica less";
  down.disabled = svc.replicas === 0;
  down.addEventListener("click", () => act(down, url, { replicas: Math.max(0, svc.replicas - 1) }));
  const up = el("button", "scale-up", "+");
  up.title = "one replica more";
  up.addEventListener("click", () => act(up, url, { replicas: svc.replicas + 1 }));
  const input = el("input", "replicas");
  input.type = "number";
  input.min = "0";
  input.dataset.service = svc.id;
  input.setAttribute("aria-label", "replicas of " + svc.name);
  input.value = typed.has(svc.id) ? typed.get(svc.id) : String(svc.replicas);
  input.addEventListener("input", () => typed.set(svc.id, input.value));
  const set = el("button", "scale-set", "Scale");
  const submit = () => {
    const n = Number(input.value);
    if (!Number.isInteger(n) || n < 0) { showError("replicas must be a whole number ≥ 0"); return; }
    typed.delete(svc.id);
    act(set, url, { replicas: n });
  };
  set.addEventListener("click", submit);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  wrap.append(down, up, input, set);
  return wrap;
}

// act POSTs a change; the stream shows its effect.
async function act(button, path, body) {
  button.disabled = true;
  try {
    await call("POST", path, body);
    showError("");
  } catch (e) {
    if (e instanceof AuthError) showLogin(e.message);
    else showError(e.message);
  } finally {
    button.disabled = false;
  }
}

// open asks whether the stored token (or none) is accepted, then streams
// or shows the token form.
async function connect() {
  try {
    const res = await fetch("/ui/v1/auth", { headers: headers(), credentials: "omit", cache: "no-store" });
    const a = await res.json();
    if (!a.ok) {
      if (a.token_required) showLogin(token() ? "wrong UI token" : "");
      else { setLive(false, "refused"); showError(a.error); }
      return;
    }
  } catch (e) {
    showError("cannot reach the agent: " + e.message);
    setLive(false, "offline");
    await sleep(2000);
    connect();
    return;
  }
  stream();
}

function start() {
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("#token").value.trim();
    if (!t) return;
    try { localStorage.setItem(TOKEN_KEY, t); } catch (err) { /* private mode: asked again next time */ }
    $("#token").value = "";
    $("#login").classList.add("hidden");
    showError("");
    connect();
  });
  connect();
}

document.addEventListener("DOMContentLoaded", start);
