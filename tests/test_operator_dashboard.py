"""The operator dashboard in headless Chromium against a real Hark with several live calls.

Live calls: three clean aiortc clients, one aiortc client whose packets pass through the
lossy, slow `tests.udp_relay`, and Hark's own browser voice client in another Chromium
tab (which sends `hark.client_stats`). The test reads the dashboard's DOM: one row per
call, the impaired call on top and coloured poor, numbers in the cells, the browser
call's own stats in the detail panel; it ends a call with the row's End button and sees
the row go, and saves a screenshot to artifacts/operator-dashboard.png.

A second test feeds 50 synthetic calls to the page and checks that an update touching one
call rewrites only that row (the table must stay usable with 50 live calls).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from server.tools.call_client import CallClient, mint_client_secret
from tests.chromium import CHROMIUM, FLAGS
from tests.speech import silence, speak, write_wav
from tests.udp_relay import Impairment, UdpRelay, local_ipv4

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)

BROWSER_ARGS = [*FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

ROWS_JS = """() => [...document.querySelectorAll('#call-rows tr')].map((tr) => ({
  id: tr.dataset.id,
  grade: tr.dataset.grade,
  cells: [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
}))"""


async def open_call(hark, relay: UdpRelay | None = None) -> CallClient:
    client = CallClient(
        hark.url,
        await mint_client_secret(hark.url, hark.api_key),
        offer_filter=relay.route_offer if relay else None,
        answer_filter=relay.route_answer if relay else None,
    )
    await client.connect()
    return client


async def live_ids(hark) -> set[str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{hark.url}/v1/operator/calls", headers={"Authorization": f"Bearer {hark.admin_key}"}
        ) as resp:
            return {c["id"] for c in (await resp.json())["data"]}


async def wait_rows(page, predicate, timeout_s: float = 40.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await page.evaluate(ROWS_JS)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"dashboard rows never matched: {json.dumps(rows, indent=1)}")
        await asyncio.sleep(0.5)


@pytest.fixture
async def browser(tmp_path: Path):
    from playwright.async_api import async_playwright

    wav = tmp_path / "quiet.wav"
    write_wav(wav, silence(3000, 48000), 48000)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_dashboard_shows_live_calls_worst_first_and_ends_one(hark, browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    question = np.concatenate(
        [silence(300, 48000), speak("What is the capital of France?", 48000), silence(1000, 48000)]
    )  # before connecting: Piper blocks the loop
    relay = UdpRelay(local_ipv4(), Impairment(loss=0.15, delay_ms=100, seed=3)).start()
    clients: list[CallClient] = []
    voice_context = await browser.new_context(permissions=["microphone"])
    dash_context = await browser.new_context(viewport={"width": 1500, "height": 760})
    try:
        impaired = await open_call(hark, relay)
        clients.append(impaired)
        for _ in range(3):
            clients.append(await open_call(hark))

        voice = await voice_context.new_page()
        await voice.goto(f"{hark.url}/?aec=0")
        await voice.get_by_role("button", name="Connect").click()
        await voice.wait_for_function("() => window.hark.state === 'connected'", timeout=30_000)

        page = await dash_context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        await page.goto(f"{hark.url}/operator?token={hark.admin_key}")

        talker = clients[3]
        await talker.say(question, 48000)  # one real turn, for the latency bars
        expected = await live_ids(hark)
        assert len(expected) == 5 and {c.call_id for c in clients} <= expected
        browser_call = (expected - {c.call_id for c in clients}).pop()

        # Every call has a row with a MOS, sorted worst first; the impaired call is poor and
        # above every clean aiortc call.
        clean_ids = {c.call_id for c in clients[1:]}

        def settled(rows: list[dict]) -> bool:
            if {r["id"] for r in rows} != expected or any(r["cells"][0] == "–" for r in rows):
                return False
            ids = [r["id"] for r in rows]
            return rows[ids.index(impaired.call_id)]["grade"] == "poor" and all(
                ids.index(impaired.call_id) < ids.index(clean) for clean in clean_ids
            )

        rows = await wait_rows(page, settled)
        print("\ndashboard rows:\n" + "\n".join(" | ".join(r["cells"][:11]) for r in rows))
        mos = [float(r["cells"][0]) for r in rows]
        assert mos == sorted(mos), rows
        by_id = {r["id"]: r["cells"] for r in rows}
        top = by_id[impaired.call_id]
        assert float(top[4]) >= 180, top  # RTT ≥ 2 × 100 ms (minus a little)
        loss_in = float(top[6].split("/")[0])
        assert 5 <= loss_in <= 30, top
        for clean in clean_ids:
            assert float(by_id[clean][6].split("/")[0]) < 1, by_id[clean]
            assert float(by_id[clean][4]) < float(top[4]), by_id[clean]
        assert await page.locator("#count-live").inner_text() == "5"
        assert await page.locator("#feed").get_attribute("data-state") == "live"

        # The browser call's detail shows what its own getStats() reported.
        await page.locator(f'#call-rows tr[data-id="{browser_call}"]').click()
        await page.wait_for_function(
            "() => /jitter buffer ms/.test(document.getElementById('client').textContent)",
            timeout=30_000,
        )
        assert await voice.evaluate("() => window.hark.clientStatsSent()") >= 1
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{hark.url}/v1/operator/calls/{browser_call}",
                headers={"Authorization": f"Bearer {hark.admin_key}"},
            ) as resp:
                timeline = await resp.json()
        print("browser call, its own report:", timeline["client"])
        print("browser call, server samples:", timeline["samples"][-2:])

        # The impaired call's detail: four charts with lines, for the screenshot.
        await page.locator(f'#call-rows tr[data-id="{impaired.call_id}"]').click()
        await page.wait_for_function(
            """(id) => document.getElementById('detail-title').textContent === id
              && document.querySelectorAll('.chart svg path').length >= 4""",
            arg=impaired.call_id,
            timeout=20_000,
        )
        await asyncio.sleep(2.5)  # one more batch, so the charts have a few points
        await page.screenshot(path=str(ARTIFACTS / "operator-dashboard.png"), full_page=True)

        # The talking call's turn: a latency bar with the pipeline's stages.
        await talker.wait_for("hark.metrics", timeout=120)
        await page.locator(f'#call-rows tr[data-id="{talker.call_id}"]').click()
        await page.wait_for_function(
            """() => ['stt', 'llm', 'tts'].every(
                 (k) => document.querySelector(`#turns .turn .seg--${k}`))""",
            timeout=20_000,
        )
        # ... and its conversation: the id links to the history API, the turn is listed.
        await page.wait_for_function(
            """() => document.querySelector('#transcript .transcript__user')
              && document.querySelector('#transcript .transcript__assistant')""",
            timeout=20_000,
        )
        link = await page.locator("#conversation-link").inner_text()
        assert link.startswith("conv_"), link
        said = await page.locator("#transcript .transcript__user").first.inner_text()
        # The user's question as transcribed ("capital": Whisper once heard "What is
        # the capital of friends?" here; accuracy is tests/test_engines_stt.py's concern).
        assert "capital" in said.lower(), said

        def talked(rows: list[dict]) -> bool:
            return any(r["id"] == talker.call_id and r["cells"][8] == "1" for r in rows)

        rows = await wait_rows(page, talked, 10)
        talker_cells = next(r["cells"] for r in rows if r["id"] == talker.call_id)
        assert float(talker_cells[9]) > 0, talker_cells  # the reply's latency, ms
        print("turn bar:", await page.locator("#turns").inner_text())
        await page.screenshot(path=str(ARTIFACTS / "operator-dashboard-turn.png"), full_page=True)

        # End a clean call from the dashboard: its row goes, the others stay.
        victim = clients[1].call_id
        async with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            await page.get_by_role("button", name=f"End call {victim}").click()
        assert (await deleted.value).status == 204
        await wait_rows(page, lambda rows: {r["id"] for r in rows} == expected - {victim}, 20)
        assert victim not in await live_ids(hark)

        # A caller hanging up disappears as well.
        await clients[2].hangup()
        await wait_rows(
            page,
            lambda rows: {r["id"] for r in rows} == expected - {victim, clients[2].call_id},
            20,
        )
        assert await page.locator("#count-live").inner_text() == "3"
        assert errors == []
    finally:
        for client in clients:
            await client.hangup()
        await voice_context.close()
        await dash_context.close()
        relay.stop()


def synthetic_call(index: int, mos: float) -> dict:
    grade = "good" if mos >= 4.0 else "fair" if mos >= 3.6 else "poor"
    return {
        "id": f"rtc_synthetic{index:02d}",
        "started_at": time.time() - 60 - index,
        "duration_s": 60.0,
        "state": "listening",
        "grade": grade,
        "quality": {
            "mos": mos,
            "rtt_ms": 20 + index,
            "jitter_in_ms": 3.0,
            "jitter_out_ms": 2.0,
            "loss_in_pct": 0.0,
            "loss_out_pct": 0.0,
            "bitrate_in_kbps": 40.0,
            "bitrate_out_kbps": 38.0,
        },
        "turns": index % 7,
        "barge_ins": 0,
        "last_turn": {"voice_to_voice_ms": 1200.0 + index},
        "client": None,
    }


MUTATIONS_JS = """async (message) => {
  const rows = document.getElementById('call-rows');
  const touched = new Set();
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const td = node.closest('td');
      const tr = node.closest('tr');
      // The age column ticks every second on its own; ignore it.
      if (td && td.cellIndex === 2) continue;
      if (tr) touched.add(tr.dataset.id);
      else touched.add('(tbody)');
    }
  });
  observer.observe(rows, { subtree: true, childList: true, characterData: true, attributes: true });
  const t0 = performance.now();
  window.operator.ingest(message);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 0));
  observer.disconnect();
  return { touched: [...touched], ms };
}"""


async def test_dashboard_with_50_calls_updates_only_what_changed(hark, browser) -> None:
    context = await browser.new_context(viewport={"width": 1500, "height": 900})
    try:
        page = await context.new_page()
        await page.goto(f"{hark.url}/operator?token={hark.admin_key}")
        await page.wait_for_function(
            "() => document.getElementById('feed').dataset.state === 'live'", timeout=20_000
        )
        await asyncio.sleep(0.5)  # the server's own snapshot has arrived and been drawn
        calls = [
            synthetic_call(i, 2.5 + i * 0.01 if i % 10 == 0 else 3.7 if i % 7 == 0 else 4.4)
            for i in range(50)
        ]
        first = await page.evaluate(MUTATIONS_JS, {"type": "snapshot", "calls": calls})
        order = await page.evaluate("() => window.operator.rowOrder()")
        assert len(order) == 50
        rank = {"poor": 0, "fair": 1, "good": 2}
        expected = [
            c["id"]
            for c in sorted(
                calls, key=lambda c: (rank[c["grade"]], c["quality"]["mos"], c["started_at"])
            )
        ]
        assert order == expected

        # An unchanged batch of all 50 touches nothing.
        same = await page.evaluate(MUTATIONS_JS, {"type": "calls.updated", "calls": calls})
        assert same["touched"] == [], same

        # One call degrades: only its row changes (cells, colour, position).
        worse = {**calls[37], "grade": "poor", "quality": {**calls[37]["quality"], "mos": 2.1}}
        batch = [*calls[:37], worse, *calls[38:]]
        one = await page.evaluate(MUTATIONS_JS, {"type": "calls.updated", "calls": batch})
        assert set(one["touched"]) <= {worse["id"], "(tbody)"} and worse["id"] in one["touched"]
        order = await page.evaluate("() => window.operator.rowOrder()")
        assert order[0] == worse["id"] and len(order) == 50

        # Render cost of a full 50-call batch where every call changed (printed, not asserted).
        timings = []
        for step in range(10):
            batch = [
                {**c, "quality": {**c["quality"], "rtt_ms": c["quality"]["rtt_ms"] + step + 1}}
                for c in calls
            ]
            timings.append(
                (await page.evaluate(MUTATIONS_JS, {"type": "calls.updated", "calls": batch}))["ms"]
            )
        print(
            f"\n50-call snapshot render: {first['ms']:.1f} ms; 50-call update batches: "
            f"median {sorted(timings)[len(timings) // 2]:.1f} ms, max {max(timings):.1f} ms "
            "(two animation frames included)"
        )
        await page.screenshot(path=str(ARTIFACTS / "operator-dashboard-50.png"))
    finally:
        await context.close()
