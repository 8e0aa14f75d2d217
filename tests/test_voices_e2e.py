"""Cloned voices asked of a server whose TTS cannot clone (Piper, the default): refused
with an `error` event (or a 400 for a new call), never spoken in another voice."""

from __future__ import annotations

import aiohttp
import pytest

from server.tools.call_client import CallClient, CallError, mint_client_secret

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("voice", ["voice_0123abcd", "caller"])
async def test_piper_refuses_a_cloned_voice_and_keeps_its_own(hark, voice: str) -> None:
    client = CallClient(hark.url, await mint_client_secret(hark.url, hark.api_key))
    await client.connect()
    try:
        mark = len(client.events)
        client.send(
            {
                "type": "session.update",
                "event_id": "ev_voice",
                "session": {"type": "realtime", "audio": {"output": {"voice": voice}}},
            }
        )
        error = (await client.wait_for("error", after=mark, timeout=10)).data["error"]
        assert error["code"] == "voice_not_supported"
        assert error["param"] == "session.audio.output.voice"
        assert error["event_id"] == "ev_voice"
        assert "cannot clone voices" in error["message"] and "HARK_TTS=f5" in error["message"]
        assert "session.updated" not in client.types()[mark:]
        # The call goes on in its own voice.
        mark = len(client.events)
        client.send({"type": "session.update", "session": {"instructions": "Be brief."}})
        updated = await client.wait_for("session.updated", after=mark, timeout=10)
        assert updated.data["session"]["audio"]["output"]["voice"] == "joe"
    finally:
        await client.hangup()


async def test_a_call_asking_a_cloned_voice_of_piper_is_refused_with_400(hark) -> None:
    session = {"audio": {"output": {"voice": "voice_0123abcd"}}}
    token = await mint_client_secret(hark.url, hark.api_key, session)
    client = CallClient(hark.url, token)
    try:
        with pytest.raises(CallError, match=r"\(400\).*voice_not_supported"):
            await client.connect()
    finally:
        await client.close()
    # No call was left behind by the refusal.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hark.url}/healthz") as response:
            assert (await response.json())["calls"] == 0
