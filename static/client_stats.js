// The browser's own view of a call, sent to Hark as `hark.client_stats` every few seconds.
//
// aiortc on the server cannot see the receiving side's jitter buffer or how much audio had
// to be concealed; the browser can. Each report is the compact summary the server accepts
// (see server/protocol/client_stats.py): interval figures are computed from the difference with the
// previous getStats() reading.

const INTERVAL_MS = 2000;

const clamp = (v, lo, hi) => (Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : null);

// Picks the audio entries of a getStats() report.
function audioEntries(report) {
  const found = { inbound: null, outbound: null, remoteInbound: null, pair: null };
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") found.inbound = s;
    else if (s.type === "outbound-rtp" && s.kind === "audio") found.outbound = s;
    else if (s.type === "remote-inbound-rtp" && s.kind === "audio") found.remoteInbound = s;
    else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") found.pair = s;
  });
  return found;
}

// Turns two readings into the summary the server accepts (null where unknown).
export function summarize(now, previous) {
  const { inbound, outbound, remoteInbound, pair } = now;
  const before = previous || {};
  const stats = {};
  const rtt = remoteInbound?.roundTripTime ?? pair?.currentRoundTripTime;
  stats.rtt_ms = clamp(rtt * 1000, 0, 600000);
  if (inbound) {
    stats.jitter_ms = clamp(inbound.jitter * 1000, 0, 600000);
    stats.packets_received = clamp(inbound.packetsReceived, 0, 1e12);
    stats.packets_lost = clamp(inbound.packetsLost, -1e12, 1e12);
    stats.concealment_events = clamp(inbound.concealmentEvents, 0, 1e12);
    stats.audio_level = clamp(inbound.audioLevel, 0, 1);
    const prev = before.inbound;
    const delta = (key) => (inbound[key] ?? 0) - ((prev && prev[key]) ?? 0);
    const emitted = delta("jitterBufferEmittedCount");
    stats.jitter_buffer_ms = emitted > 0 ? clamp((1000 * delta("jitterBufferDelay")) / emitted, 0, 600000) : null;
    const got = delta("packetsReceived");
    const lost = delta("packetsLost");
    stats.loss_pct = got + lost > 0 ? clamp((100 * Math.max(0, lost)) / (got + Math.max(0, lost)), 0, 100) : null;
    const samples = delta("totalSamplesReceived");
    stats.concealed_pct = samples > 0 ? clamp((100 * delta("concealedSamples")) / samples, 0, 100) : null;
    if (prev && inbound.timestamp > prev.timestamp) {
      const seconds = (inbound.timestamp - prev.timestamp) / 1000;
      stats.bitrate_in_kbps = clamp((8 * delta("bytesReceived")) / seconds / 1000, 0, 1e6);
    }
  }
  const prevOut = before.outbound;
  if (outbound && prevOut && outbound.timestamp > prevOut.timestamp) {
    const seconds = (outbound.timestamp - prevOut.timestamp) / 1000;
    stats.bitrate_out_kbps = clamp((8 * (outbound.bytesSent - prevOut.bytesSent)) / seconds / 1000, 0, 1e6);
  }
  for (const key of Object.keys(stats)) if (stats[key] === null || stats[key] === undefined) delete stats[key];
  return stats;
}

// Samples `pc` every INTERVAL_MS and hands each summary to `send` as a hark.client_stats event.
export class ClientStatsReporter {
  constructor(pc, send, intervalMs = INTERVAL_MS) {
    this.pc = pc;
    this.send = send;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.previous = null;
    this.sent = 0;
  }

  start() {
    if (this.timer === null) this.timer = setInterval(() => this.#tick(), this.intervalMs);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  async #tick() {
    if (!this.pc || this.pc.connectionState === "closed") return;
    try {
      const now = audioEntries(await this.pc.getStats());
      const stats = summarize(now, this.previous);
      this.previous = now;
      if (Object.keys(stats).length && this.send({ type: "hark.client_stats", stats })) this.sent += 1;
    } catch (err) {
      console.warn("hark: getStats failed", err);
    }
  }
}
