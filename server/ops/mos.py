"""A MOS estimate for a call from delay, jitter and loss: the ITU-T G.107 E-model, Opus values.

    R   = 93.2 − Idd(Ta) − Ie,eff                      (Is, Idte, Idle and A at G.107 defaults)
    Ta  = RTT/2 + jitter buffer + 26.5 ms               (mouth-to-ear delay, one way)
    Idd = 0 for Ta ≤ 100 ms, else with X = log2(Ta/100):
          25·((1 + X⁶)^⅙ − 3·(1 + (X/3)⁶)^⅙ + 2)
    Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)  (Ppl = packet loss in %, BurstR = 1)
    MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)     (clamped to 1..4.5; G.107 Annex B)

The 26.5 ms is Opus's 20 ms frame plus its 6.5 ms look-ahead; the jitter buffer is what the
receiver reports (`jitterBufferDelay`), or twice the interarrival jitter when it does not.

Opus's values: ITU-T G.113 Appendix I lists no Opus entry, so Hark uses the figures in
common use for Opus at VoIP bit rates on the narrowband R scale: Ie = 0 (Opus at 16 kbit/s
and above is at least as clear as G.711) and Bpl = 20 (its packet loss concealment is close
to G.729's Bpl = 19; without in-band FEC). They are constants below, easy to revisit.

Limits, so nobody reads more into the number than it holds: the E-model is a planning
tool, not a listening test. Loss is taken as random (BurstR = 1), so bursty loss rates too
well; jitter enters only through the buffer delay, not through late-packet discards; echo,
noise and loudness are assumed fine (the defaults); the narrowband scale caps a perfect
call at 4.41, so wideband Opus's real advantage over the phone network is not shown.
"""

from __future__ import annotations

import math

R_DEFAULT = 93.2  # G.107's R with every parameter at its default value
OPUS_IE = 0.0
OPUS_BPL = 20.0
OPUS_CODEC_DELAY_MS = 26.5  # 20 ms frame + 6.5 ms encoder look-ahead


def delay_impairment(one_way_ms: float) -> float:
    """Idd of G.107 §7.4 with the default sensitivity (sT = 1, mT = 100 ms)."""
    if one_way_ms <= 100:
        return 0.0
    x = math.log2(one_way_ms / 100)
    return 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)


def loss_impairment(loss_pct: float, ie: float = OPUS_IE, bpl: float = OPUS_BPL) -> float:
    """Ie,eff: the codec's impairment raised by random packet loss (in percent)."""
    loss = min(max(loss_pct, 0.0), 100.0)
    return ie + (95 - ie) * loss / (loss + bpl)


def r_factor(one_way_ms: float, loss_pct: float) -> float:
    return R_DEFAULT - delay_impairment(one_way_ms) - loss_impairment(loss_pct)


def mos_from_r(r: float) -> float:
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, min(4.5, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)))


def mouth_to_ear_ms(
    rtt_ms: float, jitter_ms: float, jitter_buffer_ms: float | None = None
) -> float:
    buffer = jitter_buffer_ms if jitter_buffer_ms is not None else 2 * jitter_ms
    return rtt_ms / 2 + buffer + OPUS_CODEC_DELAY_MS


def estimate_mos(
    rtt_ms: float, jitter_ms: float, loss_pct: float, jitter_buffer_ms: float | None = None
) -> float:
    """MOS (1..4.5) of an Opus call with this round trip, jitter and loss."""
    delay = mouth_to_ear_ms(rtt_ms, jitter_ms, jitter_buffer_ms)
    return round(mos_from_r(r_factor(delay, loss_pct)), 2)
