// The Hark operator dashboard: every live call, worst first, kept current by a live stream.
//
// Credentials: ?token=… or the form (kept in sessionStorage for this tab). The table is
// keyed by call id: an update rewrites only the cells whose text changed and moves only
// the rows whose rank changed, at most once per animation frame, so 50 live calls with a
// batch every 2 s cost a few dozen text updates, not a redraw.
//
// Test hook: window.operator = {calls, renders, ingest(message), select(id), rowOrder()}.

import { sparkline, turnBars } from "./operator_charts.js";

const TOKEN_KEY = "hark.operatorToken";
const RECONNECT_MS = 3000;

const $ = (id) => document.getElementById(id);
const COLUMNS = 12; // text columns; the End button's cell comes after them
const els = {
  noTurns: $("no-turns"),
  feed: $("feed"),
  feedText: $("feed-text"),
  tokenForm: $("token-form"),
  token: $("token"),
  error: $("error"),
  rows: $("call-rows"),
  empty: $("empty"),
  detail: $("detail"),
  detailTitle: $("detail-title"),
  detailMeta: $("detail-meta"),
  turns: $("turns"),
  client: $("client"),
  conversationLink: $("conversation-link"),
  transcript: $("transcript"),
  counts: { live: $("count-live"), poor: $("count-poor"), fair: $("count-fair"), good: $("count-good") },
};

const GRADE_RANK = { poor: 0, fair: 1, good: 2, unknown: 3 };
const calls = new Map(); // id → latest summary
const rows = new Map(); // id → {tr, cells: [td…], texts: [string…]}
let token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem(TOKEN_KEY) || "";
let source = null;
let frame = 0;
let selected = null;
let detailBusy = false;

const hook = {
  calls,
  renders: 0,
  ingest: (message) => ingest(message),
  select: (id) => select(id),
  rowOrder: () => [...els.rows.children].map((tr) => tr.dataset.id),
};
window.operator = hook;

// ---- formatting ----

const num = (v, digits = 0) => (typeof v === "number" ? v.toFixed(digits) : "–");
const pair = (a, b, digits = 0) => `${num(a, digits)} / ${num(b, digits)}`;

function age(startedAt) {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - startedAt));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
}

// The text of each column for one call, in the table's order (the last is the action).
function cellTexts(c) {
  const q = c.quality || {};
  const last = c.last_turn || {};
  return [
    num(q.mos, 2),
    c.id,
    age(c.started_at),
    c.language ? `${c.state} · ${c.language}` : c.state, // the caller's language, when not English
    num(q.rtt_ms),
    pair(q.jitter_in_ms, q.jitter_out_ms, 1),
    pair(q.loss_in_pct, q.loss_out_pct, 1),
    pair(q.bitrate_in_kbps, q.bitrate_out_kbps),
    String(c.turns),
    num(last.voice_to_voice_ms ?? null),
    String(c.barge_ins),
    (c.issues || []).join(", "),
  ];
}

function worstFirst(a, b) {
  const ga = GRADE_RANK[a.grade] ?? 3;
  const gb = GRADE_RANK[b.grade] ?? 3;
  if (ga !== gb) return ga - gb;
  const ma = a.quality?.mos ?? 5;
  const mb = b.quality?.mos ?? 5;
  if (ma !== mb) return ma - mb;
  return a.started_at - b.started_at;
}

// ---- rows ----

function makeRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  const cells = [];
  for (let i = 0; i < COLUMNS; i++) {
    const td = document.createElement("td");
    if (i >= 4 && i < 11) td.className = "num";
    if (i === 11) td.className = "why";
    if (i === 0) {
      const dot = document.createElement("span");
      dot.className = "grade";
      const text = document.createElement("span");
      td.append(dot, text);
    }
    if (i === 1) td.className = "id";
    tr.append(td);
    cells.push(td);
  }
  const action = document.createElement("td");
  const end = document.createElement("button");
  end.type = "button";
  end.className = "end";
  end.textContent = "End";
  end.setAttribute("aria-label", `End call ${id}`);
  end.addEventListener("click", (ev) => {
    ev.stopPropagation();
    endCall(id, end);
  });
  action.append(end);
  tr.append(action);
  tr.addEventListener("click", () => select(id));
  const row = { tr, cells, texts: new Array(COLUMNS).fill(null), grade: null };
  rows.set(id, row);
  return row;
}

function updateRow(row, c) {
  const texts = cellTexts(c);
  texts.forEach((text, i) => {
    if (row.texts[i] === text) return;
    row.texts[i] = text;
    const target = i === 0 ? row.cells[0].lastChild : row.cells[i];
    target.textContent = text;
    if (i === COLUMNS - 1) target.title = text; // "why" may be cut off
  });
  if (row.grade !== c.grade) {
    row.grade = c.grade;
    row.tr.dataset.grade = c.grade;
    row.cells[0].firstChild.className = `grade grade--${c.grade}`;
  }
  row.tr.classList.toggle("selected", c.id === selected);
}

function render() {
  frame = 0;
  hook.renders += 1;
  const ordered = [...calls.values()].sort(worstFirst);
  for (const [id, row] of rows) {
    if (!calls.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  ordered.forEach((c, index) => {
    const row = rows.get(c.id) || makeRow(c.id);
    updateRow(row, c);
    const at = els.rows.children[index];
    if (at !== row.tr) els.rows.insertBefore(row.tr, at || null);
  });
  els.empty.hidden = calls.size > 0;
  const counts = { poor: 0, fair: 0, good: 0 };
  for (const c of calls.values()) if (c.grade in counts) counts[c.grade] += 1;
  els.counts.live.textContent = String(calls.size);
  for (const grade of Object.keys(counts)) els.counts[grade].textContent = String(counts[grade]);
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

// ---- the live stream ----

function ingest(message) {
  switch (message.type) {
    case "snapshot":
      calls.clear();
      for (const c of message.calls) calls.set(c.id, c);
      break;
    case "call.started":
      calls.set(message.call.id, message.call);
      break;
    case "calls.updated":
      for (const c of message.calls) calls.set(c.id, c);
      if (selected && message.calls.some((c) => c.id === selected)) refreshDetail();
      break;
    case "call.ended":
      calls.delete(message.call_id);
      if (selected === message.call_id) els.detailMeta.textContent = `Ended: ${message.reason}`;
      break;
    default:
      return;
  }
  schedule();
}

function setFeed(state, text) {
  els.feed.dataset.state = state;
  els.feedText.textContent = text;
}

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = !message;
}

async function api(path, init = {}) {
  return fetch(path, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.headers || {}) } });
}

async function errorText(resp) {
  try {
    return (await resp.json()).error.message;
  } catch {
    return `HTTP ${resp.status}`;
  }
}

const TRANSLATIONS_MS = 3000;
let translationsTimer = null;

// Translation sessions (live and recently ended): languages and each segment's latency,
// polled (they are few; the call stream stays as it is).
async function refreshTranslations() {
  const resp = await api("/v1/operator/translations");
  if (!resp.ok) return;
  const rows = (await resp.json()).data;
  const body = $("translation-rows");
  body.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      const languages = `${(row.source_languages || []).join(", ") || "?"} → ${row.output_language}`;
      const latency = `${row.latency_ms_last ?? "–"} / ${row.latency_ms_max ?? "–"}`;
      for (const [text, numeric] of [
        [row.id, false],
        [row.state, false],
        [row.transport, false],
        [languages, false],
        [row.segments, true],
        [latency, true],
        [row.errors, true],
      ]) {
        const td = document.createElement("td");
        td.textContent = String(text);
        if (numeric) td.className = "num";
        tr.append(td);
      }
      return tr;
    }),
  );
}

async function open() {
  if (source) source.close();
  if (!token) {
    els.tokenForm.hidden = false;
    setFeed("idle", "Needs a token");
    return;
  }
  const check = await api("/v1/operator/calls");
  if (check.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    els.tokenForm.hidden = false;
    showError(`Not allowed: ${await errorText(check)}`);
    setFeed("failed", "Not allowed");
    return;
  }
  showError("");
  els.tokenForm.hidden = true;
  setFeed("connecting", "Connecting…");
  source = new EventSource(`/v1/operator/stream?token=${encodeURIComponent(token)}`);
  source.onopen = () => setFeed("live", "Live");
  clearInterval(translationsTimer);
  refreshTranslations();
  translationsTimer = setInterval(refreshTranslations, TRANSLATIONS_MS);
  source.onmessage = (ev) => {
    try {
      ingest(JSON.parse(ev.data));
    } catch (err) {
      console.error("operator: bad stream message", err);
    }
  };
  source.onerror = () => {
    setFeed("unstable", "Reconnecting…");
    if (source.readyState === EventSource.CLOSED) setTimeout(open, RECONNECT_MS);
  };
}

async function endCall(id, button) {
  button.disabled = true;
  button.textContent = "Ending…";
  const resp = await api(`/v1/operator/calls/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!resp.ok && resp.status !== 404) {
    showError(`Could not end ${id}: ${await errorText(resp)}`);
    button.disabled = false;
    button.textContent = "End";
  }
}

// ---- the selected call ----

function select(id) {
  selected = id;
  for (const [rowId, row] of rows) row.tr.classList.toggle("selected", rowId === id);
  els.detail.hidden = false;
  els.detailTitle.textContent = id;
  refreshDetail();
}

async function refreshDetail() {
  if (!selected || detailBusy) return;
  detailBusy = true;
  try {
    const id = selected;
    const resp = await api(`/v1/operator/calls/${encodeURIComponent(id)}`);
    if (!resp.ok || id !== selected) return;
    const timeline = await resp.json();
    drawDetail(timeline);
    await drawConversation(timeline.conversation_id, id);
  } finally {
    detailBusy = false;
  }
}

// The call's durable conversation: its id links to the history API, its items are listed.
async function drawConversation(conversationId, callId) {
  els.conversationLink.textContent = conversationId || "none";
  els.conversationLink.removeAttribute("href");
  if (!conversationId) {
    els.transcript.replaceChildren();
    return;
  }
  const path = `/v1/conversations/${encodeURIComponent(conversationId)}/items?order=asc&limit=100`;
  els.conversationLink.href = path;
  const resp = await api(path);
  if (!resp.ok || callId !== selected) return;
  const items = (await resp.json()).data || [];
  els.transcript.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      const parts = item.content || [];
      const words = parts.map((p) => p.text ?? p.transcript ?? "").join(" ").trim();
      const who = item.role || item.type;
      li.className = `transcript__${who}`;
      li.textContent = `${who}: ${words || item.arguments || item.output || ""}`;
      return li;
    }),
  );
}

function drawDetail(t) {
  const samples = t.samples || [];
  const pick = (key) => samples.map((s) => s[key]);
  const last = samples[samples.length - 1] || {};
  const charts = {
    rtt_ms: [[pick("rtt_ms")], { floorMax: 100 }, num(last.rtt_ms)],
    jitter: [[pick("jitter_in_ms"), pick("jitter_out_ms")], { floorMax: 20 }, pair(last.jitter_in_ms, last.jitter_out_ms, 1)],
    loss: [[pick("loss_in_pct"), pick("loss_out_pct")], { floorMax: 5 }, pair(last.loss_in_pct, last.loss_out_pct, 1)],
    mos: [[pick("mos")], { min: 1, max: 4.5 }, num(last.mos, 2)],
  };
  for (const figure of els.detail.querySelectorAll(".chart")) {
    const [series, scale, now] = charts[figure.dataset.metric];
    sparkline(figure.querySelector("svg"), series, scale);
    figure.querySelector(".chart__now").textContent = now;
  }
  const total = t.loss_total || {};
  els.detailMeta.textContent =
    `${t.state} · ${age(t.started_at)} · loss over the call ${pair(total.loss_in_pct, total.loss_out_pct, 1)} %` +
    (t.end_reason ? ` · ended: ${t.end_reason}` : "");
  turnBars(els.turns, t.turn_list || []);
  els.noTurns.hidden = (t.turn_list || []).length > 0;
  const client = t.client || {};
  const entries = Object.entries(client).filter(([k]) => k !== "at");
  els.client.replaceChildren(
    ...(entries.length
      ? entries.flatMap(([k, v]) => {
          const dt = document.createElement("dt");
          dt.textContent = k.replaceAll("_", " ");
          const dd = document.createElement("dd");
          dd.textContent = typeof v === "number" ? String(v) : "–";
          return [dt, dd];
        })
      : [Object.assign(document.createElement("dd"), { textContent: "No report from this client." })]),
  );
}

// ---- wiring ----

els.tokenForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = els.token.value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  open();
});

// Ages tick every second without waiting for the next batch.
setInterval(() => {
  for (const [id, row] of rows) {
    const c = calls.get(id);
    if (!c) continue;
    const text = age(c.started_at);
    if (row.texts[2] !== text) {
      row.texts[2] = text;
      row.cells[2].textContent = text;
    }
  }
}, 1000);

if (token && new URLSearchParams(location.search).has("token")) sessionStorage.setItem(TOKEN_KEY, token);
render();
open();
