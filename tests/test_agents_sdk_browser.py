"""OpenAI's Agents SDK for Realtime (`@openai/agents-realtime`, pinned in
tests/agents_page/package.json) in headless Chromium, from a page on another origin, with a
function tool: the user asks aloud, the tool runs in the page, its result is spoken.

The page is served by a second HTTP server on its own port (another origin than Hark's),
so the SDK's `POST /v1/realtime/calls` is a cross-origin request with a preflight: it
works only if Hark answers CORS for a client secret by default. The app's backend (this
test) mints the `ek_` secret with the API key; the page never sees the key.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tests.chromium import CHROMIUM, RATE
from tests.server_process import free_port
from tests.speech import silence, speak, write_wav
from tests.test_browser import SILENCE_RMS

PAGE = Path(__file__).parent / "agents_page"
BUNDLE = PAGE / "node_modules" / "@openai" / "agents-realtime" / "dist" / "bundle"
QUESTION = "What's the weather like in London?"
TIMEOUT_S = 120.0

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def sdk_bundle() -> Path:
    """The SDK's browser bundle, installed from the lock file on first use."""
    if not (BUNDLE / "openai-realtime-agents.mjs").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (scripts/test.sh installs nodejs)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PAGE,
            check=True,
            timeout=600,
        )
    return BUNDLE


class _PageHandler(SimpleHTTPRequestHandler):
    """The app's own web server: the page, and the SDK under /sdk/."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
    }

    def translate_path(self, path: str) -> str:
        if path.startswith("/sdk/"):
            return str(BUNDLE / Path(path.split("?")[0]).name)
        return super().translate_path(path)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin(sdk_bundle: Path) -> Iterator[str]:
    port = free_port()
    handler = functools.partial(_PageHandler, directory=str(PAGE))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_agents_sdk_page_on_another_origin_runs_a_tool_and_hears_the_answer(
    hark, page_origin: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.chromium import launch

    assert page_origin.rsplit(":", 1)[1] != str(hark.port)  # another origin than Hark's
    wav = tmp_path / "question.wav"
    write_wav(
        wav, np.concatenate([silence(3000, RATE), speak(QUESTION, RATE), silence(8000, RATE)]), RATE
    )
    secret = _mint(hark)
    with sync_playwright() as pw:
        context = launch(pw, tmp_path / "profile", wav)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.goto(f"{page_origin}/index.html")
            page.evaluate("([url, secret]) => window.startAgent(url, secret)", [hark.url, secret])
            started = time.monotonic()
            while True:
                state = page.evaluate(
                    """() => ({
                        toolCalls: window.agentPage.toolCalls,
                        errors: window.agentPage.errors,
                        level: window.agentPage.maxRemoteLevel,
                        events: window.agentPage.events.map((e) => ({
                            type: e.type,
                            response: e.response ?? null,
                            transcript: e.transcript ?? null,
                        })),
                    })"""
                )
                answered = _spoken_answer_after_tool(state["events"])
                if state["toolCalls"] and answered and state["level"] > SILENCE_RMS:
                    break
                if time.monotonic() - started > TIMEOUT_S:
                    types = [e["type"] for e in state["events"]]
                    pytest.fail(
                        f"no tool call and spoken answer in {TIMEOUT_S:.0f} s: tool calls "
                        f"{state['toolCalls']}, errors {state['errors']}, "
                        f"level {state['level']:.4f}, events {types[-40:]}\n{hark.log()[-3000:]}"
                    )
                page.wait_for_timeout(250)
            heard = " ".join(
                e["transcript"] or ""
                for e in state["events"]
                if e["type"].endswith("input_audio_transcription.completed")
            ).lower()
            assert state["toolCalls"] and state["toolCalls"][0].strip()
            if "london" in heard:  # the city the tool got is the one Whisper heard
                assert "london" in state["toolCalls"][0].lower(), (heard, state["toolCalls"])
            assert state["errors"] == [] and errors == []
            assert "error" not in [e["type"] for e in state["events"]]
            print(f"\nagents SDK turn: tool called with {state['toolCalls']}, answer {answered!r}")
            page.evaluate("() => window.agentSession.close()")
        finally:
            context.close()


def _mint(hark) -> str:
    """The app's backend mints the page's client secret with its API key."""
    import urllib.request

    request = urllib.request.Request(
        f"{hark.url}/v1/realtime/client_secrets",
        data=json.dumps({"session": {"type": "realtime"}}).encode(),
        headers={"Authorization": f"Bearer {hark.api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["value"])


def _spoken_answer_after_tool(events: list[dict]) -> str | None:
    """The transcript of a completed spoken response that came after a function call."""
    called = False
    for event in events:
        if event["type"] != "response.done" or not event["response"]:
            continue
        output = event["response"].get("output") or []
        if any(item.get("type") == "function_call" for item in output):
            called = True
            continue
        if called and event["response"].get("status") == "completed":
            for item in output:
                for part in item.get("content") or []:
                    if (
                        part.get("type") == "output_audio"
                        and (part.get("transcript") or "").strip()
                    ):
                        return part["transcript"]
    return None
