// The Hark voice client: wires the page's controls to one RealtimeCall at a time.
//
// URL parameters: ?token=ek_… uses that client secret (or API key) instead of the demo
// secret; ?aec=0 turns off echo cancellation, noise suppression and auto gain control;
// ?dtx=1 asks Hark for Opus DTX between replies (fewer packets; see README).
//
// Test hook: window.hark = {state, activity, events, maxRemoteLevel, lastError,
// audioLevel(), micLevel(), connect(), hangUp(), send(event), sendText(text),
// packetsSent() (the microphone's RTP packets so far, from getStats), packetsReceived()
// (the reply track's)}.

import { StreamLevel } from "./audio.js";
import { ClientStatsReporter } from "./client_stats.js";
import { fetchDemoSecret, HarkError, micConstraints, RealtimeCall } from "./realtime.js";
import { Conversation, showActivity, showMeter, showState } from "./ui.js";

const MAX_EVENTS = 20000;
const LEVEL_INTERVAL_MS = 50;

const params = new URLSearchParams(window.location.search);
const urlToken = params.get("token") || "";
const micProcessing = params.get("aec") !== "0";
const receiveDtx = params.get("dtx") === "1";

const $ = (id) => document.getElementById(id);
const els = {
  status: $("status"),
  statusText: $("status-text"),
  activity: $("activity"),
  meter: $("mic-meter"),
  error: $("error"),
  secretForm: $("secret-form"),
  secret: $("secret"),
  connect: $("connect"),
  mute: $("mute"),
  hangup: $("hangup"),
  textForm: $("text-form"),
  text: $("text"),
  send: $("send"),
  audio: $("remote-audio"),
  log: $("log"),
  emptyHint: $("empty-hint"),
};

const conversation = new Conversation(els.log, els.emptyHint);

let call = null; // the current RealtimeCall, null between calls
let generation = 0; // bumps on every connect and hang-up, so stale awaits can tell
let audioCtx = null;
let mic = null;
let micLevel = null;
let remoteLevel = null;
let levelTimer = null;
let muted = false;
let statsReporter = null; // sends hark.client_stats while the call is up

const hark = {
  state: "idle",
  activity: "",
  events: [],
  maxRemoteLevel: 0,
  lastError: "",
  audioLevel: () => (remoteLevel ? remoteLevel.rms() : 0),
  micLevel: () => (micLevel ? micLevel.rms() : 0),
  connect: () => connect(),
  hangUp: () => hangUp(),
  send: (event) => (call ? call.send(event) : false),
  sendText: (text) => sendText(text),
  clientStatsSent: () => (statsReporter ? statsReporter.sent : 0),
  packetsSent: () => packetsSent(),
  packetsReceived: () => packetsReceived(),
};
window.hark = hark;

async function packetsSent() {
  return rtpCount("outbound-rtp", "packetsSent");
}

async function packetsReceived() {
  return rtpCount("inbound-rtp", "packetsReceived");
}

async function rtpCount(type, key) {
  if (!call || !call.pc) return 0;
  let count = 0;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === type && s.kind === "audio") count += s[key] || 0;
  });
  return count;
}

// ---- state and controls ----

function setState(state) {
  hark.state = state;
  showState(els.status, els.statusText, state);
  const inCall = state === "connecting" || state === "connected" || state === "unstable";
  els.connect.disabled = inCall;
  els.hangup.disabled = !inCall;
  els.mute.disabled = !inCall;
  const canType = call !== null && call.isOpen;
  els.text.disabled = !canType;
  els.send.disabled = !canType;
  if (!inCall) setActivity("");
}

function setActivity(activity) {
  hark.activity = activity;
  showActivity(els.activity, activity);
}

function showError(message) {
  hark.lastError = message;
  els.error.textContent = message;
  els.error.hidden = !message;
}

function setMuted(value) {
  muted = value;
  if (mic) for (const track of mic.getAudioTracks()) track.enabled = !muted;
  els.mute.setAttribute("aria-pressed", String(muted));
  els.mute.textContent = muted ? "Unmute" : "Mute";
  els.meter.classList.toggle("meter--muted", muted);
}

function describe(err) {
  if (err instanceof HarkError) return err.message;
  if (err && err.name === "NotAllowedError") return "Microphone access was denied.";
  if (err && err.name === "NotFoundError") return "No microphone was found.";
  if (err && err.name === "NotReadableError") return "The microphone is in use by another app.";
  if (err instanceof TypeError && /fetch/i.test(err.message)) return "Cannot reach the server.";
  return (err && err.message) || String(err);
}

// ---- levels ----

function sampleLevels() {
  showMeter(els.meter, micLevel && !muted ? micLevel.rms() : 0);
  if (remoteLevel) hark.maxRemoteLevel = Math.max(hark.maxRemoteLevel, remoteLevel.rms());
}

function attachRemote(stream) {
  els.audio.srcObject = stream;
  els.audio.play().catch(() => {}); // autoplay is allowed after the Connect click
  if (remoteLevel) remoteLevel.disconnect();
  remoteLevel = new StreamLevel(audioCtx, stream);
}

// ---- events from the server ----

const handlers = {
  "session.created": (e) => {
    setActivity("ready");
    sayEchoCancelled(e.session);
  },
  "input_audio_buffer.speech_started": () => setActivity("listening"),
  "input_audio_buffer.speech_stopped": () => setActivity("thinking"),
  "conversation.item.added": (e) => {
    const item = e.item || {};
    const content = Array.isArray(item.content) ? item.content : [];
    if (item.role === "user" && item.id && content.some((c) => c.type === "input_audio")) {
      conversation.userPending(item.id);
    }
  },
  "conversation.item.input_audio_transcription.delta": (e) =>
    conversation.userTranscriptDelta(e.item_id, e.delta || ""),
  "conversation.item.input_audio_transcription.completed": (e) =>
    conversation.userTranscript(e.item_id, e.transcript),
  "conversation.item.input_audio_transcription.failed": (e) =>
    conversation.userTranscriptFailed(e.item_id),
  "response.created": () => {
    if (hark.activity !== "speaking") setActivity("thinking");
  },
  "response.output_audio_transcript.delta": (e) =>
    conversation.assistantDelta(e.response_id, e.item_id, e.delta),
  "response.output_text.delta": (e) =>
    conversation.assistantDelta(e.response_id, e.item_id, e.delta),
  "response.output_audio_transcript.done": (e) =>
    conversation.assistantDone(e.response_id, e.item_id, e.transcript),
  "response.output_text.done": (e) =>
    conversation.assistantDone(e.response_id, e.item_id, e.text),
  "response.done": (e) => {
    const response = e.response || {};
    conversation.responseDone(response.id, response.status);
    const failure = response.status_details && response.status_details.error;
    if (response.status === "failed" && failure) showError(failure.message || "The reply failed.");
    if (hark.activity === "thinking") setActivity("ready");
  },
  "output_audio_buffer.started": () => setActivity("speaking"),
  "output_audio_buffer.stopped": () => setActivity("ready"),
  "output_audio_buffer.cleared": () => {
    if (hark.activity === "speaking") setActivity("ready");
  },
  error: (e) => showError((e.error && e.error.message) || "The server reported an error."),
};

// The browser cancels the echo on this microphone (its track says so): tell Hark, so it
// need not find out over the call's first reply whether the bot's voice comes back
// (`echo_guard` "auto", the server's default, holds a voice over that reply ~50 ms to
// check it). A session whose secret chose an echo_guard keeps it.
function sayEchoCancelled(session) {
  const track = mic && mic.getAudioTracks()[0];
  const turn = session && session.audio && session.audio.input && session.audio.input.turn_detection;
  if (!call || !track || !turn || turn.echo_guard != null) return;
  if (track.getSettings().echoCancellation !== true) return;
  call.send({
    type: "session.update",
    session: { type: "realtime", audio: { input: { turn_detection: { ...turn, echo_guard: "off" } } } },
  });
}

function onEvent(event) {
  hark.events.push(event);
  if (hark.events.length > MAX_EVENTS) hark.events.splice(0, MAX_EVENTS / 2);
  const handler = handlers[event.type];
  if (!handler) return; // unknown events are fine
  try {
    handler(event);
  } catch (err) {
    console.error("hark: could not render", event.type, err);
  }
}

// ---- connect and hang up ----

async function chooseToken() {
  const pasted = els.secret.value.trim();
  if (pasted) return pasted;
  if (urlToken) return urlToken;
  const secret = await fetchDemoSecret();
  if (secret) return secret;
  els.secretForm.hidden = false;
  els.secret.focus();
  showError(
    "This server hands out no demo secrets. Paste a client secret (ek_…) or an API key, " +
      "then press Connect.",
  );
  return null;
}

async function connect() {
  if (call) return;
  const mine = ++generation;
  showError("");
  setMuted(false);
  hark.maxRemoteLevel = 0;
  setState("connecting");
  // Created inside the click, so the browser lets it play.
  audioCtx = audioCtx || new AudioContext();
  audioCtx.resume().catch(() => {});
  try {
    const token = await chooseToken();
    if (mine !== generation) return;
    if (!token) {
      setState("idle");
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new HarkError("The microphone needs a secure page: open Hark over https or localhost.");
    }
    const stream = await navigator.mediaDevices.getUserMedia(micConstraints(micProcessing));
    if (mine !== generation) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    mic = stream;
    micLevel = new StreamLevel(audioCtx, mic);
    levelTimer = setInterval(sampleLevels, LEVEL_INTERVAL_MS);
    call = new RealtimeCall({
      token,
      receiveDtx,
      micStream: mic,
      onEvent,
      onRemoteStream: attachRemote,
      onOpen: () => {
        conversation.note("Call started");
        els.secretForm.hidden = true;
        setState("connected");
        statsReporter = new ClientStatsReporter(call.pc, (event) => call !== null && call.send(event));
        statsReporter.start();
      },
      onClose: (reason) => hangUp(reason),
      onConnectionState: (state) => {
        if (state === "disconnected") setState("unstable");
        else if (state === "connected" && hark.state === "unstable") setState("connected");
        else if (state === "failed") {
          showError("The connection was lost.");
          hangUp("Call lost", "failed");
        }
      },
    });
    await call.start();
  } catch (err) {
    if (mine !== generation) return;
    await teardown();
    setState("failed");
    showError(describe(err));
  }
}

async function teardown() {
  const current = call;
  call = null;
  generation++;
  if (levelTimer !== null) clearInterval(levelTimer);
  levelTimer = null;
  if (statsReporter) statsReporter.stop();
  statsReporter = null;
  if (current) await current.hangUp();
  if (mic) for (const track of mic.getTracks()) track.stop();
  mic = null;
  if (micLevel) micLevel.disconnect();
  micLevel = null;
  if (remoteLevel) remoteLevel.disconnect();
  remoteLevel = null;
  els.audio.srcObject = null;
  showMeter(els.meter, 0);
}

async function hangUp(note = "Call ended", state = "ended") {
  if (!call) return;
  await teardown();
  conversation.note(note);
  setState(state);
}

function sendText(text) {
  const message = text.trim();
  if (!message || !call || !call.isOpen) return false;
  call.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text: message }] },
  });
  call.send({ type: "response.create" });
  conversation.userText(message);
  return true;
}

// ---- wiring ----

els.connect.addEventListener("click", () => connect());
els.hangup.addEventListener("click", () => hangUp());
els.mute.addEventListener("click", () => setMuted(!muted));
els.secretForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  connect();
});
els.textForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (sendText(els.text.value)) els.text.value = "";
});
window.addEventListener("pagehide", () => {
  if (call) call.hangUp(); // the DELETE is sent with keepalive
});

setState("idle");
