// Benchmark harness evaluated inside Hark's own page in headless Chromium.
//
// The microphone is an AudioContext destination, so every utterance starts at a known
// time on the context's clock; the reply is measured on the same clock by a
// ScriptProcessor on the received stream (audio thread, 256-sample blocks), after
// Chromium's jitter buffer and decoder: what a user would hear. Defines window.bench.
(() => {
  const RATE = 48000;
  const BLOCK = 256;
  const bench = { blocks: [], events: [] };

  bench.setup = async () => {
    const { fetchDemoSecret, RealtimeCall } = await import("/static/realtime.js");
    const ctx = new AudioContext({ sampleRate: RATE });
    await ctx.resume();
    const dest = ctx.createMediaStreamDestination();
    // A faint hum under everything (-80 dBFS): Chromium sends nothing for a digitally
    // silent Web Audio track, and a microphone is never digitally silent anyway.
    const hum = ctx.createOscillator();
    const humLevel = ctx.createGain();
    hum.frequency.value = 120;
    humLevel.gain.value = 0.0001;
    hum.connect(humLevel);
    humLevel.connect(dest);
    hum.start();
    bench.ctx = ctx;
    bench.dest = dest;
    const token = await fetchDemoSecret();
    let gotRemote;
    const remote = new Promise((resolve) => (gotRemote = resolve));
    const call = new RealtimeCall({
      token,
      micStream: dest.stream,
      onEvent: (event) => bench.events.push({ t: ctx.currentTime, type: event.type, event }),
      onRemoteStream: (stream) => gotRemote(stream),
    });
    bench.call = call;
    await call.start();
    const stream = await remote;
    // Chromium only feeds a remote WebRTC stream into Web Audio once a media element plays it.
    const element = new Audio();
    element.srcObject = stream;
    element.muted = true;
    element.play().catch(() => {});
    const source = ctx.createMediaStreamSource(stream);
    const probe = ctx.createScriptProcessor(BLOCK, 1, 1);
    probe.onaudioprocess = (ev) => {
      const x = ev.inputBuffer.getChannelData(0);
      let sum = 0;
      for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
      // The block ended about when the callback runs.
      bench.blocks.push([ctx.currentTime, Math.sqrt(sum / x.length)]);
      if (bench.blocks.length > 400000) bench.blocks.splice(0, 100000);
    };
    const mute = ctx.createGain();
    mute.gain.value = 0;
    source.connect(probe);
    probe.connect(mute);
    mute.connect(ctx.destination);
    const opened = Date.now();
    while (!call.isOpen) {
      if (Date.now() - opened > 20000) throw new Error("data channel did not open");
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  };

  // Plays base64 int16 mono 48 kHz PCM into the microphone `lead` seconds from now;
  // returns the context time at which its first sample is sent.
  bench.play = (b64, lead = 0.05) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer);
    const buffer = bench.ctx.createBuffer(1, pcm.length, RATE);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const node = bench.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(bench.dest);
    const at = bench.ctx.currentTime + lead;
    node.start(at);
    return at;
  };

  bench.now = () => bench.ctx.currentTime;

  // Context time of the first received block louder than `rms` after `t`, or null.
  bench.firstAudibleAfter = (t, rms) => {
    for (const [at, level] of bench.blocks) if (at > t && level >= rms) return at;
    return null;
  };

  // Context time of the last received block louder than `rms` in [a, b], or null.
  bench.lastAudibleBetween = (a, b, rms) => {
    let last = null;
    for (const [at, level] of bench.blocks) if (at >= a && at <= b && level >= rms) last = at;
    return last;
  };

  bench.eventsSince = (t) =>
    bench.events.filter((e) => e.t >= t).map((e) => ({ t: e.t, type: e.type, event: e.event }));

  bench.hangUp = async () => {
    if (bench.call) await bench.call.hangUp();
  };

  window.bench = bench;
})();
