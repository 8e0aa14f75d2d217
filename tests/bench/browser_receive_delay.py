"""What a browser adds on the downlink: Hark's outbound track into headless Chromium.

    .venv/bin/python -m tests.bench.browser_receive_delay [--bursts 20] [--idle dtx --gap-s 2]

An aiortc peer sends with Hark's OutboundAudioTrack (as the server does) to a Chromium page
that plays the stream and watches it with an AnalyserNode. Tone bursts go out at known
times; printed are the delay from the first burst frame handed to aiortc to the page
seeing it (same-machine clocks, epoch milliseconds), and Chromium's own getStats():
NetEq's mean jitter-buffer delay and target, and the playout delay. Compare with
transport_latency.py's aiortc client. `--idle` picks what goes out between bursts: every
frame encoded (`frames`), the server's cached silence packet (`packets`), or that with
outbound DTX (`dtx`: a 1-byte packet per 400 ms), to see what NetEq makes of each.
It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.outbound import FRAME_SECONDS, OutboundAudioTrack, opus_dtx_packet, opus_silence_packet
from tests.bench.transport_latency import (
    RATE,
    burn_cpu,
    gap_summary,
    record_frame_times,
    summary,
    tone,
)

CHROMIUM = "/usr/bin/chromium"


class ResyncOnSilence(OutboundAudioTrack):
    """A proposal for media/outbound.py, tried here: when the event loop wakes up late
    with nothing to play, skip the silence frames it missed (their RTP timestamps too)
    instead of sending them in a burst. A burst looks like network jitter to the
    browser's NetEq, which then keeps a deeper buffer for the reply that follows;
    skipped silence is just concealed as silence."""

    async def recv(self):  # type: ignore[no-untyped-def]
        if self._start is not None and not self.playing:
            late = self._clock() - (self._start + self._frames * FRAME_SECONDS)
            if late > 2 * FRAME_SECONDS:
                self._frames += int(late / FRAME_SECONDS)
        return await super().recv()


async def stall_loop(stall_ms: float, every_s: float) -> None:
    """Block the event loop now and then, as heavy Python work on it (or a starved CPU)
    does in a busy server."""
    while True:
        await asyncio.sleep(every_s)
        time.sleep(stall_ms / 1000)  # noqa: ASYNC251 (blocking the loop is the point)


PAGE_JS = """async () => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  window.onsets = [];
  pc.addTransceiver("audio", { direction: "recvonly" });
  const ctx = new AudioContext();
  pc.ontrack = (event) => {
    const stream = new MediaStream([event.track]);
    const player = new Audio();
    player.srcObject = stream;  // Chromium only pulls NetEq for a playing element
    player.play();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 256;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let loud = false;
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let peak = 0;
      for (const v of buf) peak = Math.max(peak, Math.abs(v));
      if (peak > 0.1 && !loud) {
        window.onsets.push(performance.timeOrigin + performance.now());
        loud = true;
      } else if (peak < 0.02) {
        loud = false;
      }
    }, 2);
  };
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  return pc.localDescription.sdp;
}"""

STATS_JS = """async () => {
  const out = {};
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") out.inbound = s;
    if (s.type === "media-playout") out.playout = s;
  });
  return out;
}"""


def neteq(stats: dict[str, Any]) -> dict[str, Any]:
    inbound = stats.get("inbound") or {}
    playout = stats.get("playout") or {}
    emitted = inbound.get("jitterBufferEmittedCount") or 0
    samples = playout.get("totalSamplesCount") or 0

    def per(total: str, count: float, source: dict[str, Any]) -> float | None:
        return round(source[total] / count * 1000, 1) if count and total in source else None

    return {
        "jitter_buffer_mean_ms": per("jitterBufferDelay", emitted, inbound),
        "jitter_buffer_target_mean_ms": per("jitterBufferTargetDelay", emitted, inbound),
        "jitter_buffer_minimum_mean_ms": per("jitterBufferMinimumDelay", emitted, inbound),
        "playout_delay_mean_ms": per("totalPlayoutDelay", samples, playout),
        "concealed_samples": inbound.get("concealedSamples"),
    }


async def run(
    bursts: int, stall_ms: float, resync: bool, idle: str = "frames", gap_s: float = 0.7
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    bot = ResyncOnSilence() if resync else OutboundAudioTrack()
    if idle in ("packets", "dtx"):
        bot.silence_packet = opus_silence_packet()
    if idle == "dtx":
        bot.dtx_packet = opus_dtx_packet()
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sends: list[float] = []  # epoch ms of each burst's first frame
    frame_times = record_frame_times(bot)
    trend: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ],
        )
        try:
            page = await browser.new_page()
            await page.goto("about:blank")
            offer = await page.evaluate(PAGE_JS)
            await server.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            server.addTrack(bot)
            await server.setLocalDescription(await server.createAnswer())
            await page.evaluate(
                "(sdp) => window.pc.setRemoteDescription({type: 'answer', sdp})",
                server.localDescription.sdp,
            )
            await asyncio.sleep(2.0)  # connected, silence flowing, NetEq settled
            staller = asyncio.create_task(stall_loop(stall_ms, 0.35)) if stall_ms else None
            for index in range(bursts):
                started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                bot.on_playback_started = lambda _id, f=started: (
                    f.done() or f.set_result(time.time() * 1000)
                )
                bot.begin_response(f"burst-{index}")
                bot.push(tone(), RATE)
                bot.end_response()
                sends.append(await asyncio.wait_for(started, 5))
                await asyncio.sleep(gap_s)
                if index % 5 == 4:
                    trend.append(neteq(await page.evaluate(STATS_JS)))
            if staller is not None:
                staller.cancel()
            onsets: list[float] = await page.evaluate("window.onsets")
            stats = neteq(await page.evaluate(STATS_JS))
        finally:
            await browser.close()
            await server.close()
    delays = []
    for sent in sends:
        later = [o for o in onsets if o >= sent]
        if later and later[0] - sent < 600:
            delays.append(later[0] - sent)
    return {
        "bursts": bursts,
        "sent_to_page_ms": summary(delays),
        "chromium_getstats": stats,
        "jitter_buffer_mean_ms_every_5_bursts": [t["jitter_buffer_mean_ms"] for t in trend],
        "sender_frame_gap_ms": gap_summary(frame_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--load", type=int, default=0, help="CPU-burning threads meanwhile")
    parser.add_argument("--load-nice", type=int, default=0, help="their niceness (0-19)")
    parser.add_argument("--stall-ms", type=float, default=0, help="block the loop every 0.35 s")
    parser.add_argument("--resync", action="store_true", help="skip late silence frames")
    parser.add_argument("--idle", choices=("frames", "packets", "dtx"), default="frames")
    parser.add_argument("--gap-s", type=float, default=0.7, help="from a burst's start to the next")
    args = parser.parse_args()
    stop = threading.Event()
    burn_cpu(args.load, args.load_nice, stop)
    try:
        report = asyncio.run(run(args.bursts, args.stall_ms, args.resync, args.idle, args.gap_s))
    finally:
        stop.set()
    report.update(
        load_threads=args.load,
        load_nice=args.load_nice,
        stall_ms=args.stall_ms,
        resync_on_silence=args.resync,
        idle=args.idle,
        gap_s=args.gap_s,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    main()
