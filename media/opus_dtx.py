"""Opus DTX both ways: `usedtx=1` in Hark's SDP answer, and the caller's own in its offer.

A silent caller still sends 50 Opus packets a second, and each is received, decrypted,
decoded, resampled and framed for the VAD: most of what a silent call costs the server.
With discontinuous transmission (RFC 7587, `usedtx=1` in the receiver's fmtp) a browser
sends a packet every 400 ms while its microphone is silent, and full packets again at
the first sound. The gap between them is filled with silence on the audio clock
(`media/inbound.py`), so turns still end on time.

The parameter says what the answerer wants to receive, so it goes only on the answer's
audio `a=fmtp` lines of Opus payload types; aiortc keeps the offer's fmtp there and sends
no DTX itself, so this is text on the way out, not a codec setting.

The other way, a client whose offer says `usedtx=1` prefers to receive DTX (RFC 7587,
7.1): Hark then sends an idle call a 1-byte DTX packet every 400 ms instead of 50 silence
packets a second (`wants_dtx`; `media.outbound.OutboundAudioTrack.dtx_packet`).
"""

from __future__ import annotations

import re

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) ?(.*)$")


def ask_for_dtx(answer_sdp: str) -> str:
    """`answer_sdp` with `usedtx=1` on each audio section's Opus payload types."""
    sections = _sections(answer_sdp)
    return "\r\n".join(line for section in sections for line in _section(section))


def wants_dtx(offer_sdp: str) -> bool:
    """The offer asks to receive Opus with DTX: `usedtx=1` on an audio section's Opus
    payload type."""
    for section in _sections(offer_sdp):
        if not section or not section[0].startswith("m=audio"):
            continue
        opus = _opus_types(section)
        for line in section:
            fmtp = _FMTP.match(line)
            if fmtp and fmtp.group(1) in opus:
                params = [p.strip().lower().replace(" ", "") for p in fmtp.group(2).split(";")]
                if "usedtx=1" in params:
                    return True
    return False


def _sections(sdp: str) -> list[list[str]]:
    """The SDP's lines: the session part, then one list per media section."""
    sections: list[list[str]] = [[]]
    for line in re.split(r"\r?\n", sdp):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _opus_types(section: list[str]) -> set[str]:
    """The payload types a media section maps to Opus."""
    return {m.group(1) for line in section if (m := _RTPMAP.match(line))}


def _section(lines: list[str]) -> list[str]:
    if not lines or not lines[0].startswith("m=audio"):
        return lines
    opus = _opus_types(lines)
    with_fmtp = {m.group(1) for line in lines if (m := _FMTP.match(line))}
    out: list[str] = []
    for line in lines:
        fmtp = _FMTP.match(line)
        if fmtp and fmtp.group(1) in opus:
            # aiortc copies the offer's parameters, whose `usedtx` was the offerer's wish.
            params = [p for p in fmtp.group(2).split(";") if p.strip() and not _is_dtx(p)]
            line = f"a=fmtp:{fmtp.group(1)} {';'.join([*params, 'usedtx=1'])}"
        out.append(line)
        rtpmap = _RTPMAP.match(line)
        if rtpmap and rtpmap.group(1) not in with_fmtp:
            out.append(f"a=fmtp:{rtpmap.group(1)} usedtx=1")
    return out


def _is_dtx(param: str) -> bool:
    return param.strip().lower().startswith("usedtx=")
