"""Voice-to-voice and barge-in stop time as a browser user hears them (headless Chromium).

    .venv/bin/python -m tests.bench.browser_turns [--turns 20] [--url URL]

Hark's own page is opened in Debian's Chromium; `browser_harness.js` replaces the
microphone with an AudioContext source, so each utterance starts at a known time on the
page's audio clock, and measures the received reply on the same clock after Chromium's
jitter buffer and decoder. Per turn: a question (voice-to-voice = last voiced sample
sent → first audible reply block), then, while the reply plays, an interruption (stop
time = the interruption's first voiced sample → the last audible reply block before the
bot went quiet). The server's own stop time comes from `hark.metrics`. Prints JSON with
p50/p95; never fails on a number.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.bench.voice_to_voice import QUESTIONS, percentile
from tests.chromium import CHROMIUM, FLAGS, RATE
from tests.speech import silence, speak

HARNESS = Path(__file__).with_name("browser_harness.js")
AUDIBLE_RMS = 0.01  # received reply level; Piper speech is far above, silence is 0
INTERRUPTIONS = [
    "Stop, wait a moment.",
    "Hold on, let me ask something else.",
    "No, that is not what I meant.",
    "Wait, stop please.",
]


def voiced_span_s(pcm: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms window with voice energy, in seconds from the start."""
    win = RATE // 100
    rms = np.sqrt(np.mean(pcm[: len(pcm) // win * win].reshape(-1, win).astype(float) ** 2, 1))
    loud = np.nonzero(rms > 300)[0]
    return float(loud[0]) / 100, float(loud[-1] + 1) / 100


class Clip:
    def __init__(self, text: str, tail_ms: int) -> None:
        self.text = text
        self.pcm = np.concatenate([speak(text, RATE), silence(tail_ms, RATE)])
        self.onset_s, self.end_s = voiced_span_s(self.pcm)
        self.b64 = base64.b64encode(self.pcm.astype("<i2").tobytes()).decode()


class Page:
    def __init__(self, page: Any) -> None:
        self.page = page

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait(self, predicate: str, arg: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(predicate, arg)
            if value is not None:
                return value
            time.sleep(0.03)
        return None

    def play(self, clip: Clip) -> float:
        return float(self.js("([b64]) => window.bench.play(b64)", [clip.b64]))

    def metrics_since(self, t: float) -> list[dict[str, Any]]:
        events = self.js("(t) => window.bench.eventsSince(t)", t)
        return [e["event"]["turn"] for e in events if e["type"] == "hark.metrics"]

    def quiet(self, seconds: float, timeout_s: float = 60) -> None:
        """Wait until no reply audio was received for `seconds`."""
        self.wait(
            "([s, rms]) => { const now = window.bench.now();"
            " const last = window.bench.lastAudibleBetween(now - s, now, rms);"
            " return last === null ? now : null; }",
            [seconds, AUDIBLE_RMS],
            timeout_s,
        )


def one_turn(page: Page, question: Clip, interruption: Clip, rng: random.Random) -> dict[str, Any]:
    page.quiet(1.0)
    asked_at = page.play(question)
    spoke_until = asked_at + question.end_s
    first = page.wait(
        "([t, rms]) => window.bench.firstAudibleAfter(t, rms)", [spoke_until, AUDIBLE_RMS], 60
    )
    result: dict[str, Any] = {"question": question.text}
    if first is None:
        result["error"] = "no reply audio"
        return result
    result["voice_to_voice_ms"] = round((first - spoke_until) * 1000, 1)
    # Interrupt while the reply plays: 150-600 ms into it (replies here are short).
    time.sleep(rng.uniform(0.15, 0.6))
    still = page.js(
        "([rms]) => { const now = window.bench.now();"
        " return window.bench.lastAudibleBetween(now - 0.15, now, rms); }",
        [AUDIBLE_RMS],
    )
    if still is None:
        result["barge_in"] = "reply already over"
        page.quiet(1.5)
        return result
    cut_at = page.play(interruption)
    onset = cut_at + interruption.onset_s
    time.sleep(interruption.onset_s + 1.4)
    last = page.js(
        "([a, b, rms]) => window.bench.lastAudibleBetween(a, b, rms)",
        [onset - 0.5, onset + 1.2, AUDIBLE_RMS],
    )
    if last is None or last < onset:
        # The reply ended between the check above and the onset: no barge-in to time
        # (counting it as 0 ms flattered the figures).
        result["barge_in"] = "reply over before the onset"
    elif last >= onset + 1.2 - 0.02:
        result["barge_in_client_ms"] = None
        result["barge_in"] = "not stopped within 1.2 s"
    else:
        result["barge_in_client_ms"] = round((last - onset) * 1000, 1)
    # The interruption gets its own answer; wait for it to be over before the next turn.
    page.wait(
        "([t]) => window.bench.eventsSince(t).filter(e => e.type === 'response.done').length"
        " >= 2 || null",
        [asked_at],
        60,
    )
    page.quiet(1.0)
    stops = [m.get("barge_in_stop_ms") for m in page.metrics_since(asked_at)]
    result["barge_in_server_ms"] = next((s for s in stops if s is not None), None)
    return result


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in ("voice_to_voice_ms", "barge_in_client_ms", "barge_in_server_ms"):
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        summary[key] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "median": round(statistics.median(values), 1) if values else None,
            "n": len(values),
        }
    summary["barge_in_not_stopped"] = sum(
        1 for r in results if r.get("barge_in", "").startswith("not")
    )
    return summary


def run(url: str, turns: int, seed: int = 7) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rng = random.Random(seed)
    questions = [Clip(QUESTIONS[i % len(QUESTIONS)], tail_ms=0) for i in range(turns)]
    cuts = [Clip(INTERRUPTIONS[i % len(INTERRUPTIONS)], tail_ms=0) for i in range(turns)]
    results: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            tab = browser.new_page()
            tab.goto(url + "/?aec=0")
            tab.evaluate(HARNESS.read_text())
            tab.evaluate("() => window.bench.setup()")
            page = Page(tab)
            for question, cut in zip(questions, cuts, strict=True):
                results.append(one_turn(page, question, cut, rng))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            tab.evaluate("() => window.bench.hangUp()")
        finally:
            browser.close()
    return {"turns": results, "summary": summarize(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.url:
        report = run(args.url.rstrip("/"), args.turns)
    else:
        from tests.server_process import running_server

        with running_server() as server:
            report = run(server.url, args.turns)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
