"""Quality numbers are right: known loss and delay on a real call's path, read back via the API.

Two real calls run at once against a real Hark: a clean one, and one whose packets all
pass through `tests.udp_relay` with 10 % of the RTP dropped each way and 60 ms added each
way. The operator API must report, for the impaired call, the loss the relay really caused
(both directions) and a round trip of about twice the added delay; for the clean call,
loss and round trip near zero; and it must list the impaired call first.
"""

from __future__ import annotations

import asyncio
import json
import statistics

import aiohttp
import pytest

from server.tools.call_client import CallClient, mint_client_secret
from tests.udp_relay import Impairment, UdpRelay, local_ipv4

pytestmark = pytest.mark.slow

LOSS = 0.10
DELAY_MS = 60.0
CALL_SECONDS = 16.0
LOSS_TOLERANCE_PP = 2.5  # percentage points between what the relay did and what Hark says


async def operator_get(hark, path: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{hark.url}{path}", headers={"Authorization": f"Bearer {hark.admin_key}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def open_call(hark, relay: UdpRelay | None = None) -> CallClient:
    token = await mint_client_secret(hark.url, hark.api_key)
    client = CallClient(
        hark.url,
        token,
        offer_filter=relay.route_offer if relay else None,
        answer_filter=relay.route_answer if relay else None,
    )
    await client.connect()
    return client


def median(samples: list[dict], key: str) -> float:
    values = [s[key] for s in samples if s.get(key) is not None]
    assert values, f"no sample has {key}: {samples}"
    return statistics.median(values)


async def test_operator_api_reports_injected_loss_and_delay(hark) -> None:
    relay = UdpRelay(
        local_ipv4(), Impairment(loss=LOSS, delay_ms=DELAY_MS, jitter_ms=0.0, seed=7)
    ).start()
    clean = impaired = None
    try:
        clean = await open_call(hark)
        impaired = await open_call(hark, relay)
        await asyncio.sleep(CALL_SECONDS)
        listing = await operator_get(hark, "/v1/operator/calls")
        bad = await operator_get(hark, f"/v1/operator/calls/{impaired.call_id}")
        good = await operator_get(hark, f"/v1/operator/calls/{clean.call_id}")
    finally:
        for client in (clean, impaired):
            if client is not None:
                await client.hangup()
        relay.stop()

    up, down = relay.to_server, relay.to_client
    figures = {
        "injected": {"loss_pct": LOSS * 100, "rtt_ms": 2 * DELAY_MS},
        "relay_actual": {
            "loss_to_server_pct": round(up.loss_pct, 2),
            "loss_to_client_pct": round(down.loss_pct, 2),
            "rtp_to_server": up.rtp,
            "rtp_to_client": down.rtp,
        },
        "reported_impaired": {
            "loss_total": bad["loss_total"],
            "loss_in_pct_median": round(median(bad["samples"], "loss_in_pct"), 2),
            "loss_out_pct_median": round(median(bad["samples"], "loss_out_pct"), 2),
            "rtt_ms_median": round(median(bad["samples"], "rtt_ms"), 1),
            "jitter_in_ms_median": round(median(bad["samples"], "jitter_in_ms"), 2),
            "mos": bad["quality"]["mos"],
        },
        "reported_clean": {
            "loss_total": good["loss_total"],
            "rtt_ms_median": round(median(good["samples"], "rtt_ms"), 1),
            "jitter_in_ms_median": round(median(good["samples"], "jitter_in_ms"), 2),
            "mos": good["quality"]["mos"],
        },
    }
    print("\nimpairment figures:", json.dumps(figures, indent=2))

    # The media really went through the relay, in both directions.
    assert up.rtp > 400 and down.rtp > 400, figures
    assert up.other > 0 and down.other > 0, "no STUN/DTLS/RTCP through the relay"

    # Loss, both directions: what the relay really dropped, and near what was asked for.
    loss_in = bad["loss_total"]["loss_in_pct"]
    loss_out = bad["loss_total"]["loss_out_pct"]
    assert loss_in is not None and loss_out is not None, bad["loss_total"]
    assert abs(loss_in - up.loss_pct) <= LOSS_TOLERANCE_PP, figures
    assert abs(loss_out - down.loss_pct) <= LOSS_TOLERANCE_PP, figures
    for reported in (loss_in, loss_out):
        assert abs(reported - LOSS * 100) <= 5, figures

    # Round trip: at least the added delay both ways, plus the processing time of two
    # peers on a busy shared machine (each side's RTCP handling waits for its event loop).
    rtt = median(bad["samples"], "rtt_ms")
    assert 2 * DELAY_MS * 0.9 <= rtt <= 2 * DELAY_MS + 100, figures

    # The clean call: near-zero loss and round trip.
    assert good["loss_total"]["loss_in_pct"] < 1 and good["loss_total"]["loss_out_pct"] < 1
    assert median(good["samples"], "rtt_ms") < DELAY_MS, figures
    assert good["quality"]["mos"] > bad["quality"]["mos"], figures

    # Each call's timeline has regular samples, and the listing puts the worse call on top.
    assert len(bad["samples"]) >= 4 and len(good["samples"]) >= 4
    order = [c["id"] for c in listing["data"]]
    assert order.index(impaired.call_id) < order.index(clean.call_id), listing
