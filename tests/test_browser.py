"""The browser voice client at `/`, end to end: headless Chromium talks to a real Hark.

A WAV file with a spoken question becomes Chromium's microphone. The page gets a demo
client secret, connects over WebRTC, and the test waits until the page shows the user's
transcript, the assistant's streamed reply, `response.done`, and non-silent reply audio
measured by the page's own AnalyserNode on the received stream (`window.hark`).

Set HARK_BROWSER_TEST_URL to run against an already running server instead of starting one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.chromium import CHROMIUM, RATE, launch
from tests.speech import silence, speak, write_wav

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
QUESTION = "What is the capital of France?"
TURN_TIMEOUT_S = 90.0  # real models on a slow shared 2-core CPU
SILENCE_RMS = 0.005  # the page's RMS of received audio; speech sits well above it

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)

# Events whose first arrival the test times (printed with -s), seconds after Connect.
MILESTONES = (
    "session.created",
    "input_audio_buffer.speech_stopped",
    "conversation.item.input_audio_transcription.completed",
    "response.output_audio_transcript.delta",
    "output_audio_buffer.started",
    "response.done",
)

# Everything the test reads from the page in one round trip.
SNAPSHOT_JS = """() => ({
  state: window.hark.state,
  status: document.getElementById("status-text").textContent,
  error: window.hark.lastError,
  maxRemoteLevel: window.hark.maxRemoteLevel,
  types: window.hark.events.map((e) => e.type),
  bubbles: [...document.querySelectorAll("#log .msg")].map((li) => ({
    role: li.classList.contains("msg--user") ? "user" : "assistant",
    text: li.querySelector(".msg__text").textContent,
    interrupted: li.classList.contains("msg--interrupted"),
  })),
})"""


# echo_guard as each session.created / session.updated told the page, in order.
ECHO_GUARDS_JS = """() => window.hark.events
  .filter((e) => e.type === "session.created" || e.type === "session.updated")
  .map((e) => e.session.audio.input.turn_detection.echo_guard)"""


class Server:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")


@pytest.fixture(scope="module")
def server():
    external = os.environ.get("HARK_BROWSER_TEST_URL")
    if external:
        yield Server(external)
        return
    from tests.server_process import running_server

    with running_server() as srv:
        yield srv


@pytest.fixture
def question_wav(tmp_path: Path) -> Path:
    pcm = np.concatenate([silence(1500, RATE), speak(QUESTION, RATE), silence(6000, RATE)])
    path = tmp_path / "question.wav"
    write_wav(path, pcm, RATE)
    return path


def turn_complete(snap: dict) -> bool:
    users = [b["text"].lower() for b in snap["bubbles"] if b["role"] == "user"]
    replies = [b["text"].strip() for b in snap["bubbles"] if b["role"] == "assistant"]
    return (
        any("capital" in t and "france" in t for t in users)
        and any(replies)
        and "response.done" in snap["types"]
        and snap["maxRemoteLevel"] > SILENCE_RMS
    )


def server_log_tail(server, lines: int = 40) -> str:
    log = getattr(server, "log", None)
    return "\n".join(log().splitlines()[-lines:]) if callable(log) else "(external server)"


def describe(snap: dict) -> str:
    counts: dict[str, int] = {}
    for kind in snap["types"]:
        counts[kind] = counts.get(kind, 0) + 1
    return (
        f"state={snap['state']!r} status={snap['status']!r} error={snap['error']!r} "
        f"maxRemoteLevel={snap['maxRemoteLevel']:.4f}\nbubbles={snap['bubbles']}\n"
        f"events={counts}"
    )


def test_voice_conversation(server, question_wav: Path, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-conversation.png"
    with sync_playwright() as pw:
        context = launch(pw, tmp_path / "profile", question_wav)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(f"uncaught: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    page_errors.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )

            page.goto(server.url + "/?aec=0&dtx=1")
            assert page.evaluate("() => window.hark.state") == "idle"
            page.get_by_role("button", name="Connect").click()
            started = time.monotonic()

            firsts: dict[str, float] = {}
            while True:
                snap = page.evaluate(SNAPSHOT_JS)
                elapsed = time.monotonic() - started
                for kind in MILESTONES:
                    if kind in snap["types"]:
                        firsts.setdefault(kind, elapsed)
                if snap["maxRemoteLevel"] > SILENCE_RMS:
                    firsts.setdefault("reply audio", elapsed)
                if turn_complete(snap):
                    break
                if snap["state"] in ("failed", "ended") or elapsed > TURN_TIMEOUT_S:
                    page.screenshot(path=str(shot))
                    pytest.fail(
                        f"no complete voice turn after {elapsed:.1f} s:\n{describe(snap)}"
                        f"\n--- server log (tail) ---\n{server_log_tail(server)}"
                    )
                page.wait_for_timeout(250)
            print(f"\nbrowser turn: {', '.join(f'{k} at {v:.1f} s' for k, v in firsts.items())}")
            print(describe(snap))
            metrics = page.evaluate(
                "() => window.hark.events"
                ".filter((e) => e.type === 'hark.metrics').map((e) => e.turn)"
            )
            if metrics:
                print(f"server turn metrics: {metrics}")

            # The user's words come before the reply, and the reply was not interrupted.
            roles = [b["role"] for b in snap["bubbles"] if b["text"].strip()]
            assert roles.index("user") < roles.index("assistant"), snap["bubbles"]
            assert not any(b["interrupted"] for b in snap["bubbles"]), snap["bubbles"]
            assert snap["state"] == "connected"
            assert snap["error"] == "", snap["error"]
            # Without echo cancellation (?aec=0) the page leaves echo_guard to the server.
            assert page.evaluate(ECHO_GUARDS_JS) == [None], page.evaluate(ECHO_GUARDS_JS)
            # Let the reply's audio finish playing, so the picture shows a settled page.
            try:
                page.wait_for_function(
                    "() => window.hark.activity !== 'speaking'", timeout=20_000, polling=250
                )
            except PlaywrightTimeoutError:
                print("note: no output_audio_buffer.stopped within 20 s of the reply")
            page.screenshot(path=str(shot))
            # Hark's answer asked for Opus DTX (usedtx=1): the silent microphone sends a
            # packet every ~400 ms, not 50 a second, and the turn above still ended.
            # And the page's offer (?dtx=1) asked for DTX the other way: between replies
            # Hark sends a 1-byte packet every 400 ms, and the reply above was still heard.
            before = page.evaluate("() => window.hark.packetsSent()")
            heard_before = page.evaluate("() => window.hark.packetsReceived()")
            page.wait_for_timeout(2000)
            sent = page.evaluate("() => window.hark.packetsSent()") - before
            heard = page.evaluate("() => window.hark.packetsReceived()") - heard_before
            print(f"packets in 2 s of silence: microphone {sent}, reply track {heard}")
            assert 0 < sent < 30, f"{sent} packets in 2 s of silence: no DTX"
            assert 0 < heard < 30, f"{heard} packets from Hark in 2 s of silence: no DTX"

            with page.expect_response(lambda r: r.request.method == "DELETE") as hangup:
                page.get_by_role("button", name="Hang up").click()
            assert hangup.value.status == 204
            page.wait_for_function("() => window.hark.state === 'ended'", timeout=10_000)
            assert page.locator("#status-text").inner_text() == "Call ended"
            assert page.get_by_role("button", name="Connect").is_enabled()
            assert page_errors == []
        finally:
            context.close()


def test_a_microphone_with_echo_cancellation_tells_hark(server, tmp_path: Path) -> None:
    """With the browser's echo cancellation on (the page's default), the page tells Hark
    its microphone sends no echo (`echo_guard: "off"`), so a barge-in on the first reply
    is not held while the server's default ("auto") finds that out."""
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "quiet.wav"
    write_wav(wav, silence(4000, RATE), RATE)
    with sync_playwright() as pw:
        context = launch(pw, tmp_path / "profile", wav)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(server.url + "/")
            page.get_by_role("button", name="Connect").click()
            page.wait_for_function(
                "() => window.hark.events.some((e) => e.type === 'session.updated')",
                timeout=30_000,
                polling=100,
            )
            assert page.evaluate(ECHO_GUARDS_JS) == [None, "off"]
            page.get_by_role("button", name="Hang up").click()
            page.wait_for_function("() => window.hark.state === 'ended'", timeout=10_000)
        finally:
            context.close()
