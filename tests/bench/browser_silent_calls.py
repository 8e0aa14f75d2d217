"""CPU per silent browser call: Chromium tabs on the voice client, microphones silent.

    .venv/bin/python -m tests.bench.browser_silent_calls [--calls 3] [--seconds 20] [--dtx]
        [--base DIR] [--rounds 2]

The aiortc load clients of `tests.bench.silent_calls` send 50 packets a second whatever
Hark's answer asks; a browser honours `usedtx=1` (Opus DTX) and sends a packet every
~400 ms while its microphone is silent. This starts the server as a user does, opens
`--calls` tabs of one headless Chromium on `/` (a WAV of silence as the microphone, echo
cancellation off), connects each, and reads over `--seconds` the server's CPU (every
thread, /proc) and the packets the tabs sent (getStats). `--base DIR` measures another
checkout's server first (e.g. `git worktree add DIR <commit>`), alternated `--rounds`
times, so before and after come from one run. It prints; it never fails.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.bench.silent_calls import add_ab_arguments, alternate, cpu_seconds, server_of
from tests.chromium import RATE, launch
from tests.speech import write_wav

SETTLE_S = 4.0  # after the last tab connected: ICE, DTLS, the encoder's DTX


def measure(url: str, pid: int, calls: int, seconds: float, query: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="hark-silent-") as tmp:
        wav = Path(tmp) / "silence.wav"
        write_wav(wav, np.zeros(RATE * 120, np.int16), RATE)
        with sync_playwright() as pw:
            context = launch(pw, Path(tmp) / "profile", wav)
            try:
                pages = []
                for _ in range(calls):
                    page = context.new_page()
                    page.goto(url + "/?aec=0" + query)
                    page.get_by_role("button", name="Connect").click()
                    page.wait_for_function("() => window.hark.state === 'connected'", timeout=30e3)
                    pages.append(page)
                time.sleep(SETTLE_S)
                sent = [p.evaluate("() => window.hark.packetsSent()") for p in pages]
                start = cpu_seconds(pid)
                time.sleep(seconds)
                busy = cpu_seconds(pid) - start
                sent = [
                    p.evaluate("() => window.hark.packetsSent()") - n
                    for p, n in zip(pages, sent, strict=True)
                ]
                for page in pages:
                    page.evaluate("() => window.hark.hangUp()")
            finally:
                context.close()
    return {
        "calls": calls,
        "seconds": seconds,
        "server_core_percent": round(100 * busy / seconds, 2),
        "server_core_percent_per_call": round(100 * busy / seconds / calls, 2),
        "packets_sent_per_call_s": round(statistics.median(sent) / seconds, 1),
    }


def run_one(root: Path | None, calls: int, seconds: float, query: str = "") -> dict[str, Any]:
    with server_of(root) as server:
        time.sleep(2)  # past the start's own work
        return measure(server.url, server.process.pid, calls, seconds, query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_ab_arguments(parser, calls=3)
    parser.add_argument("--dtx", action="store_true", help="the pages ask for outbound DTX")
    args = parser.parse_args()
    query = "&dtx=1" if args.dtx else ""
    alternate(
        args.base,
        args.rounds,
        lambda root: run_one(root, args.calls, args.seconds, query),
        "server_core_percent_per_call",
        "server % of a core per silent browser call (its idle share included)",
    )


if __name__ == "__main__":
    main()
