// doozer web view: the live tree, the cluster, load, history and editing.
// Self-contained: no libraries, no build step. Talks to the node through
// the websocket at /$events/<path> and the JSON API under /v1/.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const HIGHLIGHT_MS = 3000;
  const PLOT_POINTS = 120;
  const HISTORY_DEPTH = 25;
  const EVENTS_PER_PATH = 50;   // events kept per path for the history panel
  const MAX_SEEN_PATHS = 256;   // paths whose events are kept at most

  const state = {
    subtree: subtreeFromHash(),
    files: new Map(),          // path -> {rev, value, encoding}
    rows: new Map(),           // row key (see "the tree") -> its <tr>
    order: [],                 // row keys in display order
    dirFiles: new Map(),       // directory row key -> files below it
    lastRev: null,             // highest revision fully seen
    epoch: null,               // the server's run of the store lastRev belongs to
    loading: null,             // a snapshot arriving in pages: {rev, epoch, files}
    socket: null,
    backoff: 500,
    retryTimer: null,
    selected: null,
    collected: new Map(),      // path -> [{rev, kind, value, encoding}] from events (see collect)
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
    collect(ev);
    if (ev.kind === "set") {
      const f = { path: ev.path, rev: ev.rev, value: ev.value, encoding: ev.encoding };
      state.files.set(ev.path, f);
      const tr = state.rows.get(ev.path);
      if (tr) fillRow(tr, f); else addFileRow(ev.path);
      highlight(ev.path);
    } else if (state.files.delete(ev.path)) {
      removeFileRow(ev.path);
    }
    if (state.selected === ev.path) renderHistory(ev.path);
  }

  // Keeps the last EVENTS_PER_PATH events of at most MAX_SEEN_PATHS paths,
  // for the history panel; the paths changed longest ago are forgotten
  // first (a Map iterates in insertion order, and a path is re-inserted
  // at each event).
  function collect(ev) {
    const list = state.collected.get(ev.path) || [];
    state.collected.delete(ev.path);
    list.push({ rev: ev.rev, kind: ev.kind, value: ev.value, encoding: ev.encoding });
    if (list.length > EVENTS_PER_PATH) list.shift();
    state.collected.set(ev.path, list);
    while (state.collected.size > MAX_SEEN_PATHS) {
      state.collected.delete(state.collected.keys().next().value);
    }
  }

  function seeRev(rev) {
    if (state.lastRev === null || rev > state.lastRev) state.lastRev = rev;
    $("#rev").textContent = state.lastRev;
  }

  // -- the tree ------------------------------------------------------------
  //
  // Every row has a key: a file's path, or a directory's path with a
  // trailing "/" (so a file and a directory never share one). comparePaths
  // orders keys as the tree shows them: a directory just before its
  // contents. state.order holds the keys in that order and state.rows maps
  // each key to its <tr>, so an event finds its row in one lookup and a
  // create or delete inserts or removes only the rows it affects.

  function displayValue(f) {
    return f.encoding === "base64" ? "base64:" + f.value : f.value;
  }

  // The whole tree from state.files: only when a snapshot replaces it.
  function renderTree() {
    state.rows = new Map();
    state.order = [];
    state.dirFiles = new Map();
    const rows = [];
    for (const p of [...state.files.keys()].sort(comparePaths)) {
      for (const dir of ancestors(p)) {
        const n = state.dirFiles.get(dir) || 0;
        if (n === 0) rows.push(track(dir, dirRow(dir)));
        state.dirFiles.set(dir, n + 1);
      }
      rows.push(track(p, fileRow(p)));
    }
    $("#tree tbody").replaceChildren(...rows);
    $("#tree-empty").hidden = state.files.size > 0;
  }

  function track(key, tr) {
    state.rows.set(key, tr);
    state.order.push(key);
    return tr;
  }

  // Row keys of the directories above a file path, outermost first.
  function ancestors(path) {
    const parts = path.split("/").slice(1, -1);
    return parts.map((_, i) => "/" + parts.slice(0, i + 1).join("/") + "/");
  }

  function comparePaths(a, b) {
    const pa = a.split("/"), pb = b.split("/");
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
    }
    return pa.length - pb.length;
  }

  // Index of the first key in state.order not before ``key``.
  function position(key) {
    let lo = 0, hi = state.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (comparePaths(state.order[mid], key) < 0) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function insertRow(key, tr) {
    const i = position(key);
    const next = i < state.order.length ? state.rows.get(state.order[i]) : null;
    $("#tree tbody").insertBefore(tr, next);
    state.order.splice(i, 0, key);
    state.rows.set(key, tr);
  }

  function removeRow(key) {
    const tr = state.rows.get(key);
    if (!tr) return;
    tr.remove();
    state.rows.delete(key);
    const i = position(key);
    if (state.order[i] === key) state.order.splice(i, 1);
  }

  // A new file: its row, and rows for directories that had no file yet.
  function addFileRow(path) {
    for (const dir of ancestors(path)) {
      const n = state.dirFiles.get(dir) || 0;
      if (n === 0) insertRow(dir, dirRow(dir));
      state.dirFiles.set(dir, n + 1);
    }
    insertRow(path, fileRow(path));
    $("#tree-empty").hidden = true;
  }

  // A deleted file: its row, and rows of directories left with no file.
  function removeFileRow(path) {
    removeRow(path);
    for (const dir of ancestors(path)) {
      const n = (state.dirFiles.get(dir) || 1) - 1;
      if (n > 0) { state.dirFiles.set(dir, n); continue; }
      state.dirFiles.delete(dir);
      removeRow(dir);
    }
    $("#tree-empty").hidden = state.files.size > 0;
  }

  function indent(depth, name) {
    const td = document.createElement("td");
    td.style.paddingLeft = (0.5 + depth * 1.2) + "em";
    td.textContent = name;
    return td;
  }

  function dirRow(key) {
    const parts = key.split("/").slice(1, -1);
    const tr = document.createElement("tr");
    tr.className = "dir";
    tr.dataset.dir = key.slice(0, -1);
    tr.append(indent(parts.length - 1, parts[parts.length - 1] + "/"), cell("", "num"), cell(""));
    return tr;
  }

  function fileRow(path) {
    const parts = path.split("/").slice(1);
    const tr = document.createElement("tr");
    tr.className = "file" + (state.selected === path ? " selected" : "");
    tr.dataset.path = path;
    tr.append(indent(parts.length - 1, parts[parts.length - 1]), cell("", "num rev"), cell("", "value"));
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
    tr.classList.toggle("ephemeral", !!f.lease);
    tr.title = f.lease ? tr.dataset.path + " (ephemeral: lease " + f.lease + ")"
                       : (tr.dataset.path || "");
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function rowFor(path) {
    return state.rows.get(path);
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

  // Resolves to {status, data}; never rejects. A request that gets no
  // answer (status 0) or an answer that is not JSON is also reported in
  // the page's problem line, which the next JSON answer clears.
  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (state.secret) headers["Authorization"] = "Bearer " + state.secret;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      const detail = "no answer from the node (" + (e && e.message ? e.message : e) + ")";
      showProblem(method + " " + path + " failed: " + detail);
      return { status: 0, data: { error: "UNREACHABLE", detail } };
    }
    const data = await res.json().catch(() => null);
    if (data === null) {
      const detail = "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
      showProblem(method + " " + path + " failed: " + detail);
      return { status: res.status, data: { error: "OTHER", detail } };
    }
    showProblem("");
    return { status: res.status, data };
  }

  function showProblem(text) {
    const el = $("#problem");
    el.textContent = text;
    el.hidden = !text;
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

  // -- what tests and curious users may read ---------------------------------

  // Sizes of the page's own state, for checking that it stays bounded.
  window.doozerView = Object.freeze({
    stats: () => ({
      files: state.files.size,
      rows: state.rows.size,
      seenPaths: state.collected.size,
      maxSeenPaths: MAX_SEEN_PATHS,
    }),
  });

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
