// The OpenAI Realtime protocol over WebRTC, as Hark serves it: client secret, SDP offer and
// answer over HTTP, JSON events on the "oai-events" data channel, hang-up by DELETE.
// No UI in here: the page passes callbacks.

const DEMO_SECRET_PATH = "/hark/demo/client_secret";
const CALLS_PATH = "/v1/realtime/calls";
const ICE_GATHERING_MAX_MS = 2000;
const HANGUP_TIMEOUT_MS = 3000;

export class HarkError extends Error {
  constructor(message, { status = 0, code = null } = {}) {
    super(message);
    this.name = "HarkError";
    this.status = status;
    this.code = code;
  }
}

// Turns an error response into a HarkError carrying the server's own message when the body
// is the OpenAI shape {"error": {"type", "code", "message"}}.
async function errorFromResponse(resp, what) {
  let message = `${what} failed (HTTP ${resp.status})`;
  let code = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
    }
  } catch {
    // Not JSON: keep the generic message.
  }
  return new HarkError(message, { status: resp.status, code });
}

// Mints a short-lived client secret from a loopback demo server. Returns null when the
// server has demo secrets turned off (404), so the page can ask for one instead.
export async function fetchDemoSecret() {
  const resp = await fetch(DEMO_SECRET_PATH, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (resp.status === 404) return null;
  if (!resp.ok) throw await errorFromResponse(resp, "Getting a client secret");
  const body = await resp.json();
  if (!body || typeof body.value !== "string" || body.value === "") {
    throw new HarkError("The server answered without a client secret");
  }
  return body.value;
}

// getUserMedia constraints; `processing` switches echo cancellation, noise suppression and
// automatic gain control together.
export function micConstraints(processing) {
  return {
    audio: {
      echoCancellation: processing,
      noiseSuppression: processing,
      autoGainControl: processing,
    },
    video: false,
  };
}

// The offer says we prefer to receive Opus with DTX (RFC 7587 `usedtx=1`): the server
// then sends a short packet every 400 ms between replies instead of 50 a second. It is a
// receive preference, so only the copy sent to the server carries it. Off unless asked
// (`receiveDtx`): Chromium's jitter buffer then grew for the reply after a gap.
export function preferDtx(sdp) {
  const opus = new Set();
  for (const m of sdp.matchAll(/^a=rtpmap:(\d+) opus\//gim)) opus.add(m[1]);
  return sdp.replace(/^a=fmtp:(\d+) ?(.*)$/gm, (line, pt, params) => {
    if (!opus.has(pt) || /(^|;)\s*usedtx=/i.test(params)) return line;
    return `a=fmtp:${pt} ${params ? `${params};` : ""}usedtx=1`;
  });
}

function iceGatheringComplete(pc, maxMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const timer = setTimeout(finish, maxMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// One call. `start()` connects; `send(event)` writes to the data channel; `hangUp()` ends it.
// Callbacks: onEvent(event), onRemoteStream(stream), onOpen(), onClose(reason),
// onConnectionState(state). `receiveDtx`: ask Hark for Opus DTX between replies.
export class RealtimeCall {
  constructor({
    token,
    micStream,
    onEvent,
    onRemoteStream,
    onOpen,
    onClose,
    onConnectionState,
    receiveDtx = false,
  }) {
    this.token = token;
    this.receiveDtx = receiveDtx;
    this.micStream = micStream;
    this.onEvent = onEvent || (() => {});
    this.onRemoteStream = onRemoteStream || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onClose = onClose || (() => {});
    this.onConnectionState = onConnectionState || (() => {});
    this.pc = null;
    this.dc = null;
    this.location = null;
    this.closed = false;
  }

  get isOpen() {
    return !this.closed && this.dc !== null && this.dc.readyState === "open";
  }

  async start() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    for (const track of this.micStream.getAudioTracks()) pc.addTrack(track, this.micStream);
    pc.addEventListener("track", (ev) => {
      this.onRemoteStream(ev.streams[0] || new MediaStream([ev.track]));
    });
    pc.addEventListener("connectionstatechange", () => {
      if (!this.closed) this.onConnectionState(pc.connectionState);
    });

    const dc = pc.createDataChannel("oai-events");
    this.dc = dc;
    dc.addEventListener("open", () => {
      if (!this.closed) this.onOpen();
    });
    dc.addEventListener("close", () => {
      if (!this.closed) this.onClose("The server closed the call");
    });
    dc.addEventListener("message", (msg) => this.#receive(msg.data));

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await iceGatheringComplete(pc, ICE_GATHERING_MAX_MS);
    if (this.closed) return;

    const resp = await fetch(CALLS_PATH, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/sdp" },
      body: this.receiveDtx ? preferDtx(pc.localDescription.sdp) : pc.localDescription.sdp,
    });
    if (!resp.ok) throw await errorFromResponse(resp, "Starting the call");
    const location = resp.headers.get("Location");
    this.location = location ? new URL(location, window.location.href).href : null;
    const sdp = await resp.text();
    if (this.closed) {
      // Hung up while the offer was in flight: release the server side too.
      await this.#deleteCall();
      return;
    }
    await pc.setRemoteDescription({ type: "answer", sdp });
  }

  #receive(data) {
    if (typeof data !== "string") return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      console.warn("hark: ignoring a data channel message that is not JSON");
      return;
    }
    if (event && typeof event.type === "string") this.onEvent(event);
  }

  send(event) {
    if (!this.isOpen) return false;
    this.dc.send(JSON.stringify(event));
    return true;
  }

  async #deleteCall() {
    if (!this.location) return;
    const url = this.location;
    this.location = null;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), HANGUP_TIMEOUT_MS);
    try {
      await fetch(url, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${this.token}` },
        signal: abort.signal,
        keepalive: true,
      });
    } catch (err) {
      console.warn("hark: hang-up request failed:", err);
    } finally {
      clearTimeout(timer);
    }
  }

  // Tells the server the call is over, then closes the peer connection. Idempotent.
  async hangUp() {
    if (this.closed) return;
    this.closed = true;
    await this.#deleteCall();
    if (this.dc) this.dc.close();
    if (this.pc) this.pc.close();
  }
}
