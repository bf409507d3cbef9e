// doozer web view: the live tree, the cluster, load, history and editing.
// Self-contained: no libraries, no build step. Talks to the node through
// the websocket at /$events/<path> and the JSON API under /v1/.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const HIGHLIGHT_MS = 3000;
  const PLOT_POINTS = 120;
  const HISTORY_DEPTH = 25;

  const state = {
    subtree: subtreeFromHash(),
    files: new Map(),          // path -> {rev, value, encoding}
    lastRev: null,             // highest revision fully seen
    epoch: null,               // the server's run of the store lastRev belongs to
    loading: null,             // a snapshot arriving in pages: {rev, epoch, files}
    socket: null,
    backoff: 500,
    retryTimer: null,
    selected: null,
    collected: new Map(),      // path -> [{rev, kind, value, encoding}] from events
    samples: [],               // [{t, reads, writes}]
    rates: [],                 // [{w, r}]
    secret: sessionStorage.getItem("doozer-secret") || "",
    pendingAction: null,
  };

  function subtreeFromHash() {
    const h = decodeURIComponent(location.hash.replace(/^#/, ""));
    return h.startsWith("/") ? h.replace(/\/+$/, "") || "/" : "/";
  }

  // -- connection ----------------------------------------------------------

  function setConn(st, text) {
    const el = $("#conn");
    el.dataset.state = st;
    el.textContent = text || st;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const path = state.subtree === "/" ? "" : state.subtree;
    let url = proto + "//" + location.host + "/$events" + path;
    if (state.lastRev !== null && state.epoch) {
      url += "?since=" + (state.lastRev + 1) + "&epoch=" + encodeURIComponent(state.epoch);
    }
    setConn("connecting");
    const ws = new WebSocket(url);
    state.socket = ws;
    ws.onopen = () => {
      if (state.secret) send({ type: "access", secret: state.secret });
    };
    ws.onmessage = (m) => onMessage(JSON.parse(m.data));
    ws.onclose = () => {
      if (state.socket !== ws) return;
      state.loading = null;  // a partial snapshot is dropped; the next connection starts over
      const delay = Math.min(state.backoff, 15000) * (0.8 + Math.random() * 0.4);
      state.backoff = Math.min(state.backoff * 2, 15000);
      setConn("closed", "disconnected — retrying in " + Math.round(delay / 1000) + "s");
      state.retryTimer = setTimeout(connect, delay);
    };
  }

  function send(obj) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(obj));
    }
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "snapshot": return onSnapshot(msg);
      case "snapshot_page": return onSnapshotPage(msg);
      case "resumed": state.backoff = 500; state.epoch = msg.epoch; setConn("open", "live"); return;
      case "event": return onEvent(msg);
      case "status": return onStatus(msg);
      case "access":
        if (!msg.can_read) askSecret("secret not accepted");
        else $("#secret-form").hidden = true;
        return;
      case "error":
        if (msg.detail === "permission denied") {
          setConn("connecting", "needs a secret");
          if (!state.secret) askSecret();
        } else {
          showStatus(msg.error + ": " + msg.detail, true);
        }
        return;
    }
  }

  // A snapshot may come in pages: "snapshot" (with "more") then
  // "snapshot_page" messages until "more" is false. The tree and the
  // revision to resume from change only once the last page is in, so a
  // connection lost half-way never leaves a partial tree that looks whole.
  function onSnapshot(msg) {
    state.loading = { rev: msg.rev, epoch: msg.epoch, files: new Map() };
    addSnapshotFiles(msg);
  }

  function onSnapshotPage(msg) {
    if (!state.loading || state.loading.rev !== msg.rev) return;
    addSnapshotFiles(msg);
  }

  function addSnapshotFiles(msg) {
    const loading = state.loading;
    for (const f of msg.files) loading.files.set(f.path, f);
    if (msg.more) {
      setConn("connecting", "loading " + loading.files.size + " files…");
      return;
    }
    state.loading = null;
    state.backoff = 500;
    setConn("open", "live");
    state.files = loading.files;
    state.epoch = loading.epoch;
    state.lastRev = null;
    seeRev(loading.rev);
    renderTree();
  }

  function onEvent(ev) {
    seeRev(ev.rev);
    const list = state.collected.get(ev.path) || [];
    list.push({ rev: ev.rev, kind: ev.kind, value: ev.value, encoding: ev.encoding });
    if (list.length > 50) list.shift();
    state.collected.set(ev.path, list);
    const existed = state.files.has(ev.path);
    if (ev.kind === "set") {
      state.files.set(ev.path, { path: ev.path, rev: ev.rev, value: ev.value, encoding: ev.encoding });
      if (existed) updateRow(ev.path); else renderTree();
      highlight(ev.path);
    } else {
      state.files.delete(ev.path);
      renderTree();
    }
    if (state.selected === ev.path) renderHistory(ev.path);
  }

  function seeRev(rev) {
    if (state.lastRev === null || rev > state.lastRev) state.lastRev = rev;
    $("#rev").textContent = state.lastRev;
  }

  // -- the tree ------------------------------------------------------------

  function displayValue(f) {
    return f.encoding === "base64" ? "base64:" + f.value : f.value;
  }

  function renderTree() {
    const body = $("#tree tbody");
    const paths = [...state.files.keys()].sort(comparePaths);
    const rows = [];
    const dirsShown = new Set();
    for (const p of paths) {
      const parts = p.split("/").slice(1);
      for (let i = 1; i < parts.length; i++) {
        const dir = "/" + parts.slice(0, i).join("/");
        if (!dirsShown.has(dir)) {
          dirsShown.add(dir);
          rows.push(dirRow(dir, i - 1, parts[i - 1]));
        }
      }
      rows.push(fileRow(p, parts.length - 1, parts[parts.length - 1]));
    }
    body.replaceChildren(...rows);
    $("#tree-empty").hidden = paths.length > 0;
  }

  function comparePaths(a, b) {
    const pa = a.split("/"), pb = b.split("/");
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
    }
    return pa.length - pb.length;
  }

  function indent(depth, name) {
    const td = document.createElement("td");
    td.style.paddingLeft = (0.5 + depth * 1.2) + "em";
    td.textContent = name;
    return td;
  }

  function dirRow(path, depth, name) {
    const tr = document.createElement("tr");
    tr.className = "dir";
    tr.dataset.dir = path;
    tr.append(indent(depth, name + "/"), cell("", "num"), cell(""));
    return tr;
  }

  function fileRow(path, depth, name) {
    const tr = document.createElement("tr");
    tr.className = "file" + (state.selected === path ? " selected" : "");
    tr.dataset.path = path;
    tr.append(indent(depth, name), cell("", "num rev"), cell("", "value"));
    tr.title = path;
    tr.addEventListener("click", () => select(path));
    fillRow(tr, state.files.get(path));
    return tr;
  }

  function fillRow(tr, f) {
    tr.querySelector(".rev").textContent = f.rev;
    const v = tr.querySelector(".value");
    v.textContent = displayValue(f);
    v.classList.toggle("binary", f.encoding === "base64");
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function rowFor(path) {
    return [...document.querySelectorAll("#tree tr.file")].find((r) => r.dataset.path === path);
  }

  function updateRow(path) {
    const tr = rowFor(path);
    if (tr) fillRow(tr, state.files.get(path)); else renderTree();
  }

  function highlight(path) {
    const tr = rowFor(path);
    if (!tr) return;
    tr.classList.remove("changed", "settled");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("changed");
    clearTimeout(tr._settle);
    tr._settle = setTimeout(() => tr.classList.remove("changed"), HIGHLIGHT_MS);
  }

  // -- cluster and load ----------------------------------------------------

  function onStatus(msg) {
    if (!state.loading) seeRev(msg.rev);
    renderCluster(msg.cluster);
    state.samples.push({ t: msg.time, reads: msg.reads, writes: msg.writes });
    if (state.samples.length > 2) state.samples.shift();
    if (state.samples.length === 2) {
      const [a, b] = state.samples;
      const dt = Math.max(b.t - a.t, 1e-3);
      state.rates.push({ w: Math.max(0, (b.writes - a.writes) / dt), r: Math.max(0, (b.reads - a.reads) / dt) });
      if (state.rates.length > PLOT_POINTS) state.rates.shift();
      drawPlot();
    }
  }

  function renderCluster(c) {
    $("#cluster-name").textContent = c.cluster;
    const rows = c.nodes.map((n) => {
      const tr = document.createElement("tr");
      tr.dataset.node = n.name;
      if (n.name === c.leader) tr.classList.add("leader");
      tr.append(cell(n.name + (n.name === c.self ? " (this)" : "")), cell(n.role),
        cell(n.term, "num"), cell(n.applied, "num"),
        cell(n.healthy ? "healthy" : "unhealthy", n.healthy ? "healthy" : "unhealthy"));
      return tr;
    });
    $("#cluster tbody").replaceChildren(...rows);
  }

  function drawPlot() {
    const canvas = $("#plot");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth * ratio, h = canvas.clientHeight * ratio;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1, ...state.rates.map((p) => Math.max(p.w, p.r)));
    const top = niceCeil(max);
    const pad = 30 * ratio;
    ctx.strokeStyle = "#ddd";
    ctx.fillStyle = "#777";
    ctx.font = (10 * ratio) + "px sans-serif";
    for (let i = 0; i <= 2; i++) {
      const y = h - 4 * ratio - (h - 12 * ratio) * i / 2;
      ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(String(+(top * i / 2).toFixed(1)), 2 * ratio, y);
    }
    const line = (key, color) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5 * ratio;
      ctx.beginPath();
      state.rates.forEach((p, i) => {
        const x = pad + (w - pad) * i / (PLOT_POINTS - 1);
        const y = h - 4 * ratio - (h - 12 * ratio) * p[key] / top;
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    };
    line("r", "#2a6bb0");
    line("w", "#d35400");
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // -- API calls with secrets ------------------------------------------------

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (state.secret) headers["Authorization"] = "Bearer " + state.secret;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({ error: "OTHER", detail: res.statusText }));
    return { status: res.status, data };
  }

  function needsSecret(res, retry) {
    if (res.status !== 403) return false;
    state.pendingAction = retry;
    askSecret(state.secret ? "secret not accepted" : "");
    return true;
  }

  function askSecret(note) {
    $("#secret-form").hidden = false;
    if (note) showStatus(note, true);
    $("#secret").focus();
  }

  function useSecret(ev) {
    ev.preventDefault();
    state.secret = $("#secret").value;
    sessionStorage.setItem("doozer-secret", state.secret);
    send({ type: "access", secret: state.secret });
    const retry = state.pendingAction;
    state.pendingAction = null;
    if (retry) retry();
  }

  // -- editing ---------------------------------------------------------------

  function keyURL(path, rev) {
    return "/v1/keys" + path.split("/").map(encodeURIComponent).join("/") +
      (rev !== undefined && rev !== null && rev !== "" ? "?rev=" + encodeURIComponent(rev) : "");
  }

  function showStatus(text, isError) {
    const el = $("#edit-status");
    el.textContent = text;
    el.className = isError ? "error" : "ok";
  }

  async function save(ev) {
    if (ev) ev.preventDefault();
    const path = $("#edit-path").value.trim();
    const rev = $("#edit-rev").value;
    const res = await api("PUT", keyURL(path, rev), { value: $("#edit-value").value });
    if (needsSecret(res, save)) return;
    if (res.status === 200) {
      showStatus("saved " + path + " at rev " + res.data.rev);
      $("#edit-rev").value = res.data.rev;
      select(path, true);
    } else {
      showStatus(res.data.error + (res.data.detail ? ": " + res.data.detail : ""), true);
    }
  }

  async function remove() {
    const path = $("#edit-path").value.trim();
    const res = await api("DELETE", keyURL(path, $("#edit-rev").value));
    if (needsSecret(res, remove)) return;
    if (res.status === 200) {
      showStatus("deleted " + path + " at rev " + res.data.rev);
      $("#edit-rev").value = 0;
    } else {
      showStatus(res.data.error + (res.data.detail ? ": " + res.data.detail : ""), true);
    }
  }

  function startNew() {
    $("#edit-path").value = state.subtree === "/" ? "/" : state.subtree + "/";
    $("#edit-value").value = "";
    $("#edit-rev").value = 0;
    $("#edit-path").focus();
  }

  // -- selection and history -------------------------------------------------

  function select(path, keepEditor) {
    state.selected = path;
    document.querySelectorAll("#tree tr.selected").forEach((r) => r.classList.remove("selected"));
    const tr = rowFor(path);
    if (tr) tr.classList.add("selected");
    const f = state.files.get(path);
    if (f && !keepEditor) {
      $("#edit-path").value = path;
      $("#edit-value").value = f.encoding === "base64" ? "" : f.value;
      $("#edit-rev").value = f.rev;
    }
    loadHistory(path);
  }

  async function loadHistory(path) {
    $("#history-path").textContent = path;
    const found = [];
    let rev = "";
    for (let i = 0; i < HISTORY_DEPTH; i++) {
      const res = await api("GET", keyURL(path, rev));
      if (needsSecret(res, () => loadHistory(path))) return;
      if (res.status !== 200 || state.selected !== path) break;
      found.push({ rev: res.data.rev, kind: "set", value: res.data.value, encoding: res.data.encoding });
      if (res.data.rev <= 1) break;
      rev = res.data.rev - 1;
    }
    if (state.selected !== path) return;
    state.walked = { path, entries: found };
    renderHistory(path);
  }

  function renderHistory(path) {
    const byRev = new Map();
    const walked = state.walked && state.walked.path === path ? state.walked.entries : [];
    for (const e of walked) byRev.set(e.rev, e);
    for (const e of state.collected.get(path) || []) byRev.set(e.rev, e);
    const entries = [...byRev.values()].sort((a, b) => b.rev - a.rev);
    const rows = entries.map((e) => {
      const tr = document.createElement("tr");
      tr.className = e.kind;
      tr.append(cell(e.rev, "num"), cell(e.kind === "set" ? "set" : "deleted"),
        cell(e.kind === "set" ? displayValue(e) : ""));
      return tr;
    });
    $("#history tbody").replaceChildren(...rows);
  }

  // -- start -----------------------------------------------------------------

  function start() {
    $("#subtree").textContent = state.subtree;
    $("#editor").addEventListener("submit", save);
    $("#edit-delete").addEventListener("click", remove);
    $("#edit-new").addEventListener("click", startNew);
    $("#secret-form").addEventListener("submit", useSecret);
    window.addEventListener("hashchange", () => {
      state.subtree = subtreeFromHash();
      $("#subtree").textContent = state.subtree;
      state.lastRev = null;
      state.epoch = null;
      state.loading = null;
      state.files = new Map();
      renderTree();
      if (state.socket) { const old = state.socket; state.socket = null; old.close(); }
      connect();
    });
    renderTree();
    drawPlot();
    connect();
  }

  start();
})();
