// Audio levels: an AnalyserNode on a MediaStream, read as the RMS of its recent samples.

// A window of about `windowMs` of audio, rounded to the power of two AnalyserNode needs.
function fftSizeFor(sampleRate, windowMs) {
  const wanted = (sampleRate * windowMs) / 1000;
  const size = 2 ** Math.round(Math.log2(Math.max(32, wanted)));
  return Math.min(32768, Math.max(32, size));
}

export class StreamLevel {
  constructor(ctx, stream, windowMs = 100) {
    this.source = ctx.createMediaStreamSource(stream);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = fftSizeFor(ctx.sampleRate, windowMs);
    this.samples = new Float32Array(this.analyser.fftSize);
    // A muted path to the destination keeps the graph pulling samples in every browser.
    this.sink = ctx.createGain();
    this.sink.gain.value = 0;
    this.source.connect(this.analyser);
    this.analyser.connect(this.sink);
    this.sink.connect(ctx.destination);
  }

  // Root mean square of the last window, 0 (silence) to 1 (full scale).
  rms() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) sum += s * s;
    return Math.sqrt(sum / this.samples.length);
  }

  disconnect() {
    this.source.disconnect();
    this.analyser.disconnect();
    this.sink.disconnect();
  }
}
