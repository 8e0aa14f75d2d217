"""Turn-taking benchmark: Hark beside Pipecat, through real WebRTC clients, printed as JSON.

    /work/main/.venv/bin/python -m tests.bench.turn_taking --turns 20 --peers hark,pipecat

Each peer is started in turn, then every scenario runs `--turns` trials (round robin),
each on a fresh call with Piper speaking into the client's microphone
(tests/acoustic.py); with `--interleave` all peers are started first and take turns
trial by trial. Never two calls at once: the peers share the CPU.


- `reply_barge_in`: a question; voice-to-voice (last voiced frame sent → first audible
  reply frame received); 0.5 s into the reply, a real interruption; barge-in stop at
  the client (its onset sent → reply audio silent for 0.5 s) and, for Hark, on the
  server clock (`barge_in_stop_ms` in `hark.metrics`, null if not reported). Only a
  cancel of the reply that was playing counts as honouring it; an uncancelled reply not
  heard again from 1 s after the onset (a pause that resumes is heard again) ended by
  itself and is not judged. Stop times are from honoured barge-ins. The scenarios that
  act during a reply ask TOPICS, which get 2-3 s replies.
- `paused_question`: a question with a 300-700 ms pause mid-sentence. Cut off if reply
  audio arrives before the second half has been sent or (where transcripts are whole
  committed turns, as Hark's) a committed transcript lacks the second half; a premature
  turn end also counts a reply the peer began before the second half and then dropped.
- `noise_during_reply`: "uh-huh", "mm-hmm", "yeah", a cough or a click (< 400 ms) 0.6 s
  into the reply. False barge-in if the peer cancelled the reply (a pause that resumes
  is fine; its silent gaps are reported).
- `echo`: the client plays the reply back into its microphone 100-300 ms later at -6 to
  -12 dB, no echo cancellation, and says nothing about it: Hark's default
  (`echo_guard: "auto"`) must find out. Two questions per call, reported apart:
  the first reply (nothing known about the client) and a later one. Self-interruption if
  the peer cancelled its own reply; also counts replies to its own echo.
- `echo_speech`: the same echo, plus a real interruption mixed on top 0.5 s into the
  call's first reply and again into a later one (reported apart): it should be honoured
  every time.

Voice-to-voice pools every trial that starts with a plain question. The benchmark never
fails on a number: it prints the summary as JSON (exit 0 unless something crashed) and
writes every trial to `--details`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.acoustic import (
    EchoingMicrophone,
    ReplyRecorder,
    ScriptedMicrophone,
    noises,
    pause,
    utterance,
)
from tests.bench.peers.base import Call, Peer, Signals

QUESTIONS = [  # plain questions: voice-to-voice, and the echo scenario
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What color is the sky?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet?",
    "What do bees make?",
    "What is the opposite of hot?",
    "Which animal says moo?",
    "How many days are in a week?",
    "What is the tallest mountain in the world?",
]
# Asked where something happens during the reply: these get replies of 2-3 s from the
# embedded model (one-line answers such as "A cow." would end before any verdict).
TOPICS = [
    "Tell me about the moon.",
    "How does rain form?",
    "Tell me about the ocean.",
    "What do you know about elephants?",
    "Tell me about the sun.",
    "What is a rainbow?",
    "What is the weather like in spring?",
    "How do plants grow?",
    "Tell me about trees.",
    "Describe a forest.",
]
# (first half, second half, a word of the second half Whisper hears reliably)
PAUSED = [
    ("What is the capital", "of France?", "france"),
    ("How many legs", "does a spider have?", "spider"),
    ("Who wrote", "Romeo and Juliet?", "juliet"),
    ("What is the largest", "planet in the solar system?", "planet"),
    ("Which animal", "says moo?", "says"),  # tiny.en often hears "move"
]
PAUSES_MS = [300, 400, 500, 600, 700]
INTERRUPTION = "Wait, stop. Tell me about dogs instead."
ECHO_DELAYS_MS = [100, 150, 200, 250, 300]
ECHO_GAINS_DB = [-6, -8, -10, -12]

REPLY_TIMEOUT_S = 40.0  # a slow peer on a busy 2-core machine still answers within this
BARGE_AFTER_S = 0.5  # into the reply: long enough to be speaking, short enough to cut
NOISE_AFTER_S = 0.6
QUIET_HOLD_MS = 500.0  # silence this long means the audio stopped (word gaps are shorter)
REPLY_DONE_HOLD_MS = 1500.0  # silence this long means the reply is over
NOISE_DONE_HOLD_MS = 2500.0  # ... after a noise: longer than a paused reply waits to resume
# A reply that went quiet within this of an onset without being cancelled ended by itself
# before the peer had to decide: the trial says nothing about barge-in (Pipecat needs
# ~0.6-0.9 s to react; a peer that ignores barge-ins keeps talking past this).
REACTION_BUDGET_MS = 1000.0
CONTINUED_LOOK_S = 5.0  # how far past the budget to look for the same reply's audio
CANCEL_WAIT_S = 8.0  # after an interruption's onset, for the peer to cancel
METRICS_WAIT_S = 1.0  # after the cancel, for Hark's hark.metrics
TRIAL_TIMEOUT_S = 120.0
SCENARIOS = ("reply_barge_in", "paused_question", "noise_during_reply", "echo", "echo_speech")


def ms(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier) * 1000, 1)


def playing_at(ear: ReplyRecorder, t: float) -> bool:
    """The reply is audible in the 150 ms before `t` (not over before we act)."""
    return ear.audible_between(t - 0.15, t)


def continued(ear: ReplyRecorder, signals: Signals, onset: float) -> bool:
    """The reply under way at `onset` was still heard after the reaction budget, paused
    and resumed included: a peer that meant to cancel it had its chance. Audio of a reply
    begun after the onset (an answer to the interruption) does not count. A reply that
    did not continue ended by itself: it says nothing about how the peer judged the sound
    (before, a peer that paused for over 0.5 s and then resumed was wrongly left out)."""
    start = onset + REACTION_BUDGET_MS / 1000
    end = min((t for t in signals.responses if t > onset), default=start + CONTINUED_LOOK_S)
    return end > start and ear.audible_between(start, end)


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


class Sounds:
    """Every utterance synthesized before the first call: Piper blocks, and a blocked
    loop would make the microphone burst audio to catch up, corrupting send times."""

    def __init__(self) -> None:
        self.questions = [utterance(q) for q in QUESTIONS]
        self.topics = [utterance(q) for q in TOPICS]
        self.paused = [(utterance(a), utterance(b), key) for a, b, key in PAUSED]
        self.interruption = utterance(INTERRUPTION)
        self.noises = noises()
        self.lead_in = pause(300)


async def ask(call: Call, sounds: Sounds, index: int, *, topic: bool = False) -> dict[str, Any]:
    """Say question `index` (of TOPICS with `topic`); wait for the first reply audio."""
    texts, pcms = (TOPICS, sounds.topics) if topic else (QUESTIONS, sounds.questions)
    question = call.mic.say(np.concatenate([sounds.lead_in, pcms[index % len(texts)]]), "question")
    await question.sent()
    first = await call.ear.wait_audible(question.end or time.monotonic(), REPLY_TIMEOUT_S)
    return {
        "question": texts[index % len(texts)],
        "speech_end": question.end,
        "first_audio": first,
        "voice_to_voice_ms": ms(first, question.end),
    }


async def interrupt(call: Call, sounds: Sounds, at: float) -> dict[str, Any]:
    """Barge in at `at` with real speech; when did the reply go quiet, did the peer cancel?"""
    await sleep_until(at)
    barge = call.mic.say(sounds.interruption, "interruption")
    await barge.sent()
    assert barge.onset is not None
    quiet = await call.ear.wait_quiet(barge.onset, QUIET_HOLD_MS, 15)
    signals = await settled_signals(call, barge.onset)
    cancel = signals.reply_cancel(playing_at=barge.onset)
    server_stop = [v for t, v in signals.barge_in_stop_ms if t >= barge.onset]
    stop = ms(quiet, barge.onset)
    ended_by_itself = cancel is None and not continued(call.ear, signals, barge.onset)
    applicable = playing_at(call.ear, barge.onset) and not ended_by_itself
    return {
        "reply_playing_at_onset": applicable,
        "reply_ended_by_itself": ended_by_itself,
        "stop_client_ms": stop if applicable and cancel is not None else None,
        "stop_server_ms": server_stop[0] if server_stop else None,
        "honoured": cancel is not None if applicable else None,
        "cancel_after_ms": ms(cancel, barge.onset),
        "transcripts": [text for _, text in signals.transcripts],
    }


async def settled_signals(call: Call, onset: float) -> Signals:
    """The peer's signals once it has decided about an interruption at `onset`: a peer
    that pauses first may confirm the cancel only when the words are transcribed, and
    Hark's metrics (with its barge-in time) follow the cancelled response."""
    deadline = onset + CANCEL_WAIT_S
    while True:
        signals = await call.signals()
        cancel = signals.reply_cancel(playing_at=onset)
        if cancel is not None or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    if cancel is not None:
        await asyncio.sleep(METRICS_WAIT_S)
        signals = await call.signals()
    return signals


async def reply_barge_in(call: Call, sounds: Sounds, index: int) -> dict[str, Any]:
    result = await ask(call, sounds, index, topic=True)
    if result["first_audio"] is None:
        return {**result, "error": "no reply"}
    return {**result, **await interrupt(call, sounds, result["first_audio"] + BARGE_AFTER_S)}


async def paused_question(call: Call, sounds: Sounds, index: int) -> dict[str, Any]:
    first_pcm, second_pcm, key = sounds.paused[index % len(PAUSED)]
    gap = PAUSES_MS[index % len(PAUSES_MS)]
    call.mic.say(sounds.lead_in, "lead-in")
    first = call.mic.say(first_pcm, "first half")
    call.mic.say(pause(gap), "pause")
    second = call.mic.say(second_pcm, "second half")
    await second.sent()
    assert first.end is not None and second.end is not None
    reply = await call.ear.wait_audible(first.end, REPLY_TIMEOUT_S)
    if reply is not None:
        await call.ear.wait_quiet(reply, REPLY_DONE_HOLD_MS, 30)
    await asyncio.sleep(0.5)
    signals = await call.signals()
    early_audio = reply is not None and reply < second.end
    early_response = any(t < second.end for t in signals.responses)
    split = signals.transcripts_are_turns and any(
        text.strip() and key not in text.lower() for _, text in signals.transcripts
    )
    return {
        "question": " … ".join(PAUSED[index % len(PAUSED)][:2]),
        "pause_ms": gap,
        # What the user notices: an answer starts over their words, or (where the peer
        # reports whole committed turns) half the question became a turn of its own.
        "cut_off": early_audio or split,
        # Also the peer's own early decisions the user may not hear (a reply begun, then
        # dropped when the second half came).
        "premature_turn_end": early_audio or early_response or split,
        "reply_before_second_half": early_audio,
        "response_started_before_second_half": early_response,
        "transcript_split": split,
        "voice_to_voice_ms": ms(reply, second.end),
        "transcripts": [text for _, text in signals.transcripts],
    }


async def noise_during_reply(call: Call, sounds: Sounds, index: int) -> dict[str, Any]:
    result = await ask(call, sounds, index, topic=True)
    if result["first_audio"] is None:
        return {**result, "error": "no reply"}
    label, pcm = sounds.noises[index % len(sounds.noises)]
    await sleep_until(result["first_audio"] + NOISE_AFTER_S)
    noise = call.mic.say(pcm, label)
    await noise.sent()
    onset = noise.onset or noise.started or time.monotonic()
    playing = playing_at(call.ear, onset)
    end = await call.ear.wait_quiet(noise.end or onset, NOISE_DONE_HOLD_MS, 40)
    await asyncio.sleep(0.5)
    signals = await call.signals()
    cancelled = signals.reply_cancel(playing_at=onset) is not None
    if not cancelled and not continued(call.ear, signals, onset):
        playing = False  # the reply ended as the noise began: nothing to judge
    return {
        **result,
        "noise": label,
        "reply_playing_at_onset": playing,
        "false_barge_in": cancelled if playing else None,
        "reply_audio_after_noise_ms": round(call.ear.audible_ms_between(onset, end or onset), 1),
        "gaps_after_noise_ms": call.ear.gaps_ms(onset, end or time.monotonic()),
    }


def echoing(index: int) -> EchoingMicrophone:
    return EchoingMicrophone(
        delay_ms=ECHO_DELAYS_MS[index % len(ECHO_DELAYS_MS)],
        gain_db=ECHO_GAINS_DB[index % len(ECHO_GAINS_DB)],
    )


async def echo_reply(call: Call, sounds: Sounds, index: int, replies_before: int) -> dict[str, Any]:
    """One question on an echoing call and its reply, with what the echo did to it."""
    result = await ask(call, sounds, index)
    if result["first_audio"] is None:
        return {**result, "error": "no reply"}
    end = await call.ear.wait_quiet(result["first_audio"], REPLY_DONE_HOLD_MS, 60)
    await asyncio.sleep(3.0)  # room for a reply to its own echo to begin
    signals = await call.signals()
    cancels = [c for c in signals.cancels if c[0] >= result["first_audio"]]
    return {
        **result,
        "self_interrupted": bool(cancels),
        "replies_to_own_echo": max(0, len(signals.responses) - replies_before - 1),
        "reply_ms": ms(end, result["first_audio"]),
        "gaps_ms": call.ear.gaps_ms(result["first_audio"], end or time.monotonic()),
        "responses": len(signals.responses),
        "transcripts": [text for _, text in signals.transcripts],
    }


async def echo(call: Call, sounds: Sounds, index: int) -> dict[str, Any]:
    """A call's first reply, then a later one: the echo guard knows nothing on the first
    (it has not yet measured the echo path)."""
    first = await echo_reply(call, sounds, index, 0)
    later = {}
    if "error" not in first:
        later = await echo_reply(call, sounds, index + 1, first["responses"])
    mic = call.mic
    return {
        **first,
        "echo_delay_ms": getattr(mic, "delay_s", 0) * 1000,
        "echo_gain_db": ECHO_GAINS_DB[index % len(ECHO_GAINS_DB)],
        "echo_frames": getattr(mic, "echoed_frames", None),
        "later": later,
    }


async def echo_speech(call: Call, sounds: Sounds, index: int) -> dict[str, Any]:
    """A real interruption 0.5 s into a call's first reply over its echo, then (once the
    answer to it has played) the same into a later reply."""
    result = await ask(call, sounds, index, topic=True)
    if result["first_audio"] is None:
        return {**result, "error": "no reply"}
    barge = await interrupt(call, sounds, result["first_audio"] + BARGE_AFTER_S)
    later: dict[str, Any] = {}
    answer = await call.ear.wait_audible(time.monotonic(), REPLY_TIMEOUT_S)
    if answer is not None:
        await call.ear.wait_quiet(answer, REPLY_DONE_HOLD_MS, 60)
    again = await ask(call, sounds, index + 1, topic=True)
    if again["first_audio"] is not None:
        later = await interrupt(call, sounds, again["first_audio"] + BARGE_AFTER_S)
    return {
        **result,
        **barge,
        "echo_delay_ms": getattr(call.mic, "delay_s", 0) * 1000,
        "echo_gain_db": ECHO_GAINS_DB[index % len(ECHO_GAINS_DB)],
        "later": later,
    }


Scenario = Callable[[Call, Sounds, int], Awaitable[dict[str, Any]]]
RUNNERS: dict[str, tuple[Scenario, bool]] = {  # name → (trial, uses the echoing mic)
    "reply_barge_in": (reply_barge_in, False),
    "paused_question": (paused_question, False),
    "noise_during_reply": (noise_during_reply, False),
    "echo": (echo, True),
    "echo_speech": (echo_speech, True),
}


async def trial(peer: Peer, scenario: str, sounds: Sounds, index: int) -> dict[str, Any]:
    run, echoes = RUNNERS[scenario]
    mic: ScriptedMicrophone = echoing(index) if echoes else ScriptedMicrophone()
    call: Call | None = None
    try:
        call = await peer.call(mic)
        if isinstance(mic, EchoingMicrophone):
            call.ear.listeners.append(mic.hear)
        await asyncio.sleep(0.5)  # let RTP start flowing both ways
        t0 = time.monotonic()
        result = await asyncio.wait_for(run(call, sounds, index), TRIAL_TIMEOUT_S)
        signals = await call.signals()  # kept, so verdicts can be re-judged offline
        if signals.metrics:
            result["breakdown"] = signals.metrics[0]  # the peer's own, for its first reply
        result["peer_events_s"] = {
            "t0": round(t0, 3),
            "responses": [round(t - t0, 3) for t in signals.responses],
            "cancels": [[round(w - t0, 3), round(b - t0, 3)] for w, b in signals.cancels],
        }
        for key in ("speech_end", "first_audio"):
            if isinstance(result.get(key), float):
                result[key] = round(result[key] - t0, 3)
        return result
    except Exception as exc:  # one bad trial is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if call is not None:
            await call.hangup()
        else:
            mic.stop()


async def run_trials(
    peers: list[Peer],
    scenarios: list[str],
    turns: int,
    sounds: Sounds,
    results: dict[str, dict[str, list[dict[str, Any]]]],
    save: Callable[[], None],
) -> None:
    """Fill `results[peer][scenario]` trial by trial (round robin over scenarios, then
    over `peers`), saving after each, so a stopped run keeps balanced data."""
    for index in range(turns):
        for scenario in scenarios:
            for peer in peers:
                result = await trial(peer, scenario, sounds, index)
                result["load_1m"] = round(os.getloadavg()[0], 2)  # how busy the machine was
                results[peer.name].setdefault(scenario, []).append(result)
                skip = ("speech_end", "first_audio", "peer_events_s")
                brief = {k: v for k, v in result.items() if k not in skip}
                print(
                    json.dumps({"peer": peer.name, "scenario": scenario, **brief}), file=sys.stderr
                )
                save()
                await asyncio.sleep(0.5)  # let the peer tear the call down


# Summary ---------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (the value a trial actually had)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))], 1)


def stats(values: list[Any]) -> dict[str, Any]:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return {
        "p50": percentile(numbers, 50),
        "p95": percentile(numbers, 95),
        "mean": round(statistics.fmean(numbers), 1) if numbers else None,
        "n": len(numbers),
    }


def rate(flags: list[Any]) -> dict[str, Any]:
    judged = [bool(f) for f in flags if f is not None]
    count = sum(judged)
    return {
        "rate": round(count / len(judged), 3) if judged else None,
        "count": count,
        "n": len(judged),
    }


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def column(scenario: str, key: str) -> list[Any]:
        return [r.get(key) for r in results.get(scenario, [])]

    plain = ("reply_barge_in", "noise_during_reply", "echo", "echo_speech")
    barge = [r for r in results.get("reply_barge_in", []) if r.get("reply_playing_at_onset")]
    echo_barge = [r for r in results.get("echo_speech", []) if r.get("reply_playing_at_onset")]
    echo_later = [
        r["later"]
        for r in results.get("echo_speech", [])
        if (r.get("later") or {}).get("reply_playing_at_onset")
    ]

    def later_column(scenario: str, key: str) -> list[Any]:
        return [(r.get("later") or {}).get(key) for r in results.get(scenario, [])]

    # stop times come from honoured barge-ins only; the rest show in the honoured rate
    return {
        "voice_to_voice_ms": stats([v for s in plain for v in column(s, "voice_to_voice_ms")]),
        "barge_in_stop_client_ms": stats([r.get("stop_client_ms") for r in barge]),
        "barge_in_stop_server_ms": stats([r.get("stop_server_ms") for r in barge]),
        "barge_in_honoured": rate([r.get("honoured") for r in barge]),
        "false_cutoff_paused": rate(column("paused_question", "cut_off")),
        "premature_turn_end_paused": rate(column("paused_question", "premature_turn_end")),
        "paused_voice_to_voice_ms": stats(column("paused_question", "voice_to_voice_ms")),
        "false_barge_in_noise": rate(column("noise_during_reply", "false_barge_in")),
        # The echo scenarios run at the server's echo_guard default ("auto"): first and
        # later replies apart, since the guard learns the echo path on the first.
        "echo_self_interruptions_first": rate(column("echo", "self_interrupted")),
        "echo_self_interruptions_later": rate(later_column("echo", "self_interrupted")),
        "echo_replies_to_own_echo_first": rate(
            [v if v is None else v > 0 for v in column("echo", "replies_to_own_echo")]
        ),
        "echo_replies_to_own_echo_later": rate(
            [v if v is None else v > 0 for v in later_column("echo", "replies_to_own_echo")]
        ),
        "echo_speech_honoured_first": rate([r.get("honoured") for r in echo_barge]),
        "echo_speech_stop_client_ms_first": stats([r.get("stop_client_ms") for r in echo_barge]),
        "echo_speech_honoured_later": rate([r.get("honoured") for r in echo_later]),
        "echo_speech_stop_client_ms_later": stats([r.get("stop_client_ms") for r in echo_later]),
        "load_1m_mean": stats([r.get("load_1m") for rs in results.values() for r in rs])["mean"],
        "errors": sum(1 for rs in results.values() for r in rs if "error" in r),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def make_peer(name: str, args: argparse.Namespace) -> Peer:
    if name == "hark":
        from tests.bench.peers.hark import HarkPeer

        session = json.loads(args.hark_session) if args.hark_session else None
        return HarkPeer(args.hark_url, args.hark_api_key, session)
    if name == "pipecat":
        from tests.bench.peers.pipecat import PipecatPeer

        return PipecatPeer()
    raise SystemExit(f"unknown peer {name!r}: use hark, pipecat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="trials per scenario and peer")
    parser.add_argument("--peers", default="hark,pipecat")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--hark-url", help="an already running Hark (else one is started)")
    parser.add_argument("--hark-api-key", default="")
    parser.add_argument(
        "--hark-session",
        help="JSON session for Hark's client secrets, e.g. "
        '\'{"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}\'',
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="start all peers, then alternate them trial by trial (never two calls at once)",
    )
    parser.add_argument("--details", default=".bench/turn_taking.json", help="every trial")
    parser.add_argument(
        "--summarize",
        metavar="DETAILS[,DETAILS…]",
        help="only print the summary of saved runs (several are pooled)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the peers' servers are stopped, not orphaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}: use {', '.join(SCENARIOS)}")
    path = Path(args.details)
    if args.summarize:
        runs = [json.loads(Path(f).read_text()) for f in args.summarize.split(",")]
        print(json.dumps(report_from(merged(runs)), indent=2))
        return
    peers = [make_peer(name.strip(), args) for name in args.peers.split(",") if name.strip()]
    sounds = Sounds()
    saved: dict[str, Any] = {"turns_per_scenario": args.turns, "info": {}, "trials": {}}

    def save() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=1))

    for peer in peers:
        saved["trials"][peer.name] = {}
        saved["info"][peer.name] = peer.info
    if args.interleave:
        # Both peers up at once (idle unless in a trial), trials alternating, so load from
        # elsewhere on the machine falls on both alike.
        with contextlib.ExitStack() as stack:
            for peer in peers:
                stack.enter_context(peer.running())
            asyncio.run(run_trials(peers, scenarios, args.turns, sounds, saved["trials"], save))
    else:
        for peer in peers:
            started = time.monotonic()
            with peer.running():
                asyncio.run(
                    run_trials([peer], scenarios, args.turns, sounds, saved["trials"], save)
                )
            peer.info["wall_s"] = round(time.monotonic() - started, 1)
    save()
    report = report_from(saved)
    report["details"] = str(path)
    print(json.dumps(report, indent=2))


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several saved runs as one: their trials pooled per peer and scenario."""
    out: dict[str, Any] = {"turns_per_scenario": 0, "info": {}, "trials": {}}
    for run in runs:
        out["turns_per_scenario"] += run["turns_per_scenario"]
        for name, scenarios in run["trials"].items():
            out["info"].setdefault(name, run["info"].get(name, {}))
            for scenario, trials in scenarios.items():
                out["trials"].setdefault(name, {}).setdefault(scenario, []).extend(trials)
    return out


def report_from(saved: dict[str, Any]) -> dict[str, Any]:
    """The printed summary, from the saved trials (also of a run that was stopped)."""
    report: dict[str, Any] = {"turns_per_scenario": saved["turns_per_scenario"], "peers": {}}
    for name, results in saved["trials"].items():
        report["peers"][name] = {"info": saved["info"].get(name, {}), **summarize(results)}
    hark, pipecat = report["peers"].get("hark"), report["peers"].get("pipecat")
    if hark and pipecat:
        report["hark_over_pipecat_voice_to_voice"] = {
            key: ratio(hark["voice_to_voice_ms"][key], pipecat["voice_to_voice_ms"][key])
            for key in ("p50", "p95")
        }
    return report


if __name__ == "__main__":
    main()
