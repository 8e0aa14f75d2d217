"""`ask_for_dtx`: Hark's answer asks the caller's Opus encoder for DTX, and nothing else
in the SDP changes. (The browser test shows Chromium then sends ~10 packets in 2 s of
silence instead of ~100.)"""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from media.opus_dtx import ask_for_dtx, wants_dtx

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=0",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:1",
        "a=sctp-port:5000",
        "",
    ]
)


def fmtp(sdp: str, kind: str) -> dict[int, dict[str, str]]:
    """Each payload type's parameters as aiortc parses them, values as text."""
    media = next(m for m in SessionDescription.parse(sdp).media if m.kind == kind)
    return {c.payloadType: {k: str(v) for k, v in c.parameters.items()} for c in media.rtp.codecs}


def test_opus_gets_usedtx_1_in_place_of_the_offerers_wish() -> None:
    answer = ask_for_dtx(ANSWER)
    params = fmtp(answer, "audio")
    assert params[111] == {"minptime": "10", "useinbandfec": "1", "usedtx": "1"}
    assert params[0] == {} and params[8] == {}  # G.711 has no DTX parameter
    assert answer.count("usedtx") == 1
    # Only the audio section changes: the data channel's lines are as they were.
    assert answer.split("m=application")[1] == ANSWER.split("m=application")[1]


def test_an_opus_type_without_fmtp_gets_one() -> None:
    answer = ask_for_dtx(ANSWER.replace("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=0\r\n", ""))
    assert "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 usedtx=1\r\n" in answer
    assert fmtp(answer, "audio")[111] == {"usedtx": "1"}


def test_an_answer_without_opus_is_left_alone() -> None:
    pcmu = ANSWER.replace("a=rtpmap:111 opus/48000/2\r\n", "")
    assert ask_for_dtx(pcmu) == pcmu


def test_an_offer_that_asks_for_dtx_is_told_apart() -> None:
    """`wants_dtx` reads the caller's own wish to receive DTX from its offer."""
    assert not wants_dtx(ANSWER)  # usedtx=0
    assert wants_dtx(ask_for_dtx(ANSWER))
    assert wants_dtx(ask_for_dtx(ANSWER).replace("\r\n", "\n"))  # bare LF line ends
    assert not wants_dtx(ANSWER.replace("usedtx=0", "usedtx=1").replace("opus/", "other/"))
    assert not wants_dtx(ANSWER.replace(";usedtx=0", ""))
