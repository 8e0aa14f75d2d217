"""Durable conversations against a real server: the Conversations API and its tenants, a
call stored and then resumed over real WebRTC with the `call` client, a persona's
greeting from the user's memory, aborted turns left out, `kill -9` losing nothing that
was done, and a bad persona file stopping the server with the file and field named."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from server.tools.call_client import CallClient, mint_client_secret
from tests.server_process import ROOT, running_server
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

KEY_A = "sk-tenant-a-0123456789"
KEY_B = "sk-tenant-b-0123456789"
ADMIN = "sk-admin-memory-0123456789"
ENV = {
    "HARK_API_KEYS": f"{KEY_A},{KEY_B}",
    "HARK_ADMIN_KEYS": ADMIN,
    "HARK_JWT_SECRET": "memory-test-signing-secret-0123456789",
    "HARK_RECORDING": "1",
}


@pytest.fixture(scope="module")
def server():
    with running_server(ENV) as process:
        yield process


async def request(
    server, method: str, path: str, key: str = KEY_A, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.url + path, json=body, headers=headers) as resp:
            data = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, data


async def test_conversations_api_shapes_tenants_and_bad_input(server):
    status, conv = await request(
        server,
        "POST",
        "/v1/conversations",
        body={
            "metadata": {"topic": "travel"},
            "items": [
                {"type": "message", "role": "user", "content": "I'm going to Lisbon."},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Lovely!"}]},
            ],
        },
    )
    assert status == 200, conv
    assert set(conv) >= {"id", "object", "created_at", "metadata"}
    assert conv["object"] == "conversation" and conv["id"].startswith("conv_")
    cid = conv["id"]
    status, items = await request(server, "GET", f"/v1/conversations/{cid}/items?order=asc")
    assert status == 200 and items["object"] == "list" and items["has_more"] is False
    assert [i["role"] for i in items["data"]] == ["user", "assistant"]
    assert items["data"][0]["content"] == [{"type": "input_text", "text": "I'm going to Lisbon."}]
    assert (
        items["first_id"] == items["data"][0]["id"] and items["last_id"] == items["data"][1]["id"]
    )
    # Another tenant sees nothing of it.
    for path in (f"/v1/conversations/{cid}", f"/v1/conversations/{cid}/items"):
        status, error = await request(server, "GET", path, key=KEY_B)
        assert status == 404 and error["error"]["code"] == "conversation_not_found"
    assert (await request(server, "DELETE", f"/v1/conversations/{cid}", key=KEY_B))[0] == 404
    _, theirs = await request(server, "GET", "/v1/conversations?limit=100", key=KEY_B)
    assert cid not in [c["id"] for c in theirs["data"]]
    _, mine = await request(server, "GET", "/v1/conversations?limit=100")
    assert cid in [c["id"] for c in mine["data"]]
    # Operators see every tenant's, read only.
    status, everyone = await request(server, "GET", "/v1/conversations?limit=100", key=ADMIN)
    assert status == 200 and any(c["id"] == cid and c["hark"]["tenant"] for c in everyone["data"])
    assert (await request(server, "POST", "/v1/conversations", key=ADMIN, body={}))[0] == 403
    # Bad input: unknown id, malformed cursor, oversized metadata, bad limit or order.
    cases = [
        ("GET", "/v1/conversations/conv_00000000000000000000", None, 404),
        ("GET", "/v1/conversations/not-an-id", None, 404),
        ("GET", "/v1/conversations?after=garbage", None, 400),
        ("GET", "/v1/conversations?limit=0", None, 400),
        ("GET", f"/v1/conversations/{cid}/items?order=up", None, 400),
        ("GET", f"/v1/conversations/{cid}/items?after=item_nope", None, 404),
        ("GET", f"/v1/conversations/{cid}/items?after=not%20an%20id", None, 400),
        ("GET", f"/v1/conversations/{cid}/items/item_nope", None, 404),
        ("POST", "/v1/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, 400),
        ("POST", "/v1/conversations", {"metadata": {"k": "v" * 513}}, 400),
        ("POST", "/v1/conversations", {"items": [{"type": "message", "role": "x"}]}, 400),
        ("POST", f"/v1/conversations/{cid}", {"metadata": "nope"}, 400),
    ]
    for method, path, body, expected in cases:
        status, error = await request(server, method, path, body=body)
        assert status == expected, (method, path, error)
        assert set(error["error"]) >= {"type", "code", "message"}


async def test_client_secrets_for_a_user_and_a_conversation(server):
    _, conv = await request(server, "POST", "/v1/conversations", body={})
    _, other = await request(server, "POST", "/v1/conversations", key=KEY_B, body={})
    async with aiohttp.ClientSession() as http:

        async def mint(body: dict[str, Any], key: str = KEY_A) -> tuple[int, Any]:
            async with http.post(
                f"{server.url}/v1/realtime/client_secrets",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as resp:
                return resp.status, await resp.json()

        status, secret = await mint({"sub": "dana", "session": {"conversation": conv["id"]}})
        assert status == 200 and secret["session"]["conversation"] == conv["id"]
        # Another tenant's conversation, an unknown persona, recording when it is off.
        assert (await mint({"session": {"conversation": other["id"]}}))[0] == 404
        status, error = await mint({"session": {"persona": "pirate"}})
        assert status == 400 and error["error"]["param"] == "session.persona"
        assert "ava" in error["error"]["message"]
        status, error = await mint({"session": {"recording": "yes"}})
        assert status == 400 and error["error"]["param"] == "session.recording"
    # The secret reads its own conversation, and nothing else.
    token = secret["value"]
    assert (await request(server, "GET", f"/v1/conversations/{conv['id']}", key=token))[0] == 200
    assert (await request(server, "GET", f"/v1/conversations/{other['id']}", key=token))[0] == 404
    assert (await request(server, "GET", "/v1/conversations", key=token))[0] == 403
    assert (await request(server, "DELETE", f"/v1/conversations/{conv['id']}", key=token))[0] == 403


def _types_after(client: CallClient, start: int) -> list[str]:
    return [e.type for e in client.events[start:]]


async def _ask(client: CallClient, text: str, timeout: float = 90) -> dict[str, Any]:
    mark = len(client.events)
    await client.say(np.concatenate([speak(text, 48000), silence(900, 48000)]), 48000)
    await client.wait_for("conversation.item.input_audio_transcription.completed", after=mark)
    done = await client.wait_for("response.done", after=mark, timeout=timeout)
    return done.data["response"]


async def test_a_call_is_stored_then_resumed_with_its_history_replayed(server):
    status, _ = await request(
        server,
        "PUT",
        "/hark/users/carol/memory",
        body={"profile": {"name": "Carol"}, "goals": "Talk about travel.", "notes": ""},
    )
    assert status == 200
    # The secret is minted for the learner Carol (`sub`) and the tutor Ava.
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/v1/realtime/client_secrets",
            json={"sub": "carol", "session": {"persona": "ava"}},
            headers={"Authorization": f"Bearer {KEY_A}"},
        ) as resp:
            token = (await resp.json())["value"]
    first = CallClient(server.url, token)
    try:
        await first.connect()
        session = first.events[0].data["session"]
        cid = session["conversation"]
        assert session["persona"] == "ava" and cid.startswith("conv_")
        assert "Talk about travel." in session["instructions"]  # the template, filled in
        greeting = await first.wait_for("response.done")
        assert "Carol" in greeting.data["response"]["output"][0]["content"][0]["transcript"]
        reply = await _ask(first, "What is the capital of France?")
        assert reply["status"] == "completed"
        assert reply["conversation_id"] == cid  # the stored conversation it joined
    finally:
        await first.hangup()
    await asyncio.sleep(0.3)
    _, stored = await request(server, "GET", f"/v1/conversations/{cid}/items?order=asc")
    roles = [i["role"] for i in stored["data"]]
    assert roles == ["assistant", "user", "assistant"], stored
    user = stored["data"][1]["content"][0]
    # The stored item is the user's spoken question, every word of it ("the capital of
    # friends?" was Whisper's greedy pass over WebRTC: tests/test_engines_stt.py).
    assert user["type"] == "input_audio" and "france" in user["transcript"].lower()
    assert stored["data"][2]["content"][0]["type"] == "output_audio"
    _, record = await request(server, "GET", f"/v1/conversations/{cid}")
    assert record["hark"]["user"] == "carol" and record["hark"]["persona"] == "ava"
    assert record["hark"]["calls"] == [first.call_id]

    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/v1/realtime/client_secrets",
            json={"sub": "carol", "session": {"persona": "ava", "conversation": cid}},
            headers={"Authorization": f"Bearer {KEY_A}"},
        ) as resp:
            token = (await resp.json())["value"]
    second = CallClient(server.url, token)
    try:
        await second.connect()
        assert second.events[0].data["session"]["conversation"] == cid
        resumed = await second.wait_for("response.done")
        spoken = resumed.data["response"]["output"][0]["content"][0]["transcript"]
        assert "Welcome back" in spoken
        replay = [e.data for e in second.events[1:7] if e.type.startswith("conversation.item.")]
        assert [e["type"] for e in replay] == [
            "conversation.item.added",
            "conversation.item.done",
        ] * 3
        assert [e["item"]["id"] for e in replay[::2]] == [i["id"] for i in stored["data"]]
        assert replay[2]["previous_item_id"] == stored["data"][0]["id"]
        assert _types_after(second, 1).index("response.created") >= 6  # replay comes first
        await _ask(second, "Where is the Eiffel Tower?")
    finally:
        await second.hangup()
    await asyncio.sleep(0.3)
    _, after = await request(server, "GET", f"/v1/conversations/{cid}/items?order=asc")
    assert len(after["data"]) == 6 and after["data"][:3] == stored["data"]
    _, record = await request(server, "GET", f"/v1/conversations/{cid}")
    assert record["hark"]["calls"] == [first.call_id, second.call_id]


async def test_aborted_replies_are_not_history(server):
    token = await mint_client_secret(server.url, KEY_A)
    client = CallClient(server.url, token)
    try:
        await client.connect()
        cid = client.events[0].data["session"]["conversation"]
        # The conversation is settled for the call's life.
        client.send({"type": "session.update", "session": {"conversation": "conv_" + "1" * 20}})
        refused = await client.wait_for("error")
        assert refused.data["error"]["param"] == "session.conversation"
        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Tell me a long story."}],
                },
            }
        )
        mark = len(client.events)
        client.send({"type": "response.create"})
        await client.wait_for("response.created", after=mark)
        client.send({"type": "response.cancel"})
        done = await client.wait_for("response.done", after=mark)
        assert done.data["response"]["status"] == "cancelled"
    finally:
        await client.hangup()
    await asyncio.sleep(0.3)
    _, items = await request(server, "GET", f"/v1/conversations/{cid}/items")
    assert [i["role"] for i in items["data"]] == ["user"]


async def test_a_recorded_call_can_be_listed_downloaded_and_deleted(server, tmp_path):
    token = await mint_client_secret(server.url, KEY_A, {"recording": True})
    client = CallClient(server.url, token)
    try:
        await client.connect()
        session = client.events[0].data["session"]
        assert session["recording"] is True  # announced in session.created
        cid = session["conversation"]
        await _ask(client, "What is the capital of Italy?")
        await asyncio.sleep(0.5)
    finally:
        await client.hangup()
    await asyncio.sleep(1.0)  # the recording is closed and indexed
    status, listed = await request(server, "GET", f"/v1/recordings?conversation_id={cid}")
    assert status == 200 and len(listed["data"]) == 1
    recording = listed["data"][0]
    assert recording["status"] == "complete" and recording["call_id"] == client.call_id
    assert [e["role"] for e in recording["transcript"]] == ["user", "assistant"]
    assert "italy" in recording["transcript"][0]["text"].lower()
    rid = recording["id"]
    assert (await request(server, "GET", f"/v1/recordings/{rid}", key=KEY_B))[0] == 404
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/v1/recordings/{rid}/audio",
            headers={"Authorization": f"Bearer {KEY_A}"},
        ) as resp:
            assert resp.status == 200 and resp.content_type == "audio/ogg"
            (tmp_path / "call.ogg").write_bytes(await resp.read())
    import av

    with av.open(str(tmp_path / "call.ogg")) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert audio.shape[0] == 2  # caller left, assistant right
    assert np.abs(audio[0]).max() > 0.05 and np.abs(audio[1]).max() > 0.05
    # Deleting the conversation deletes its recordings.
    assert (await request(server, "DELETE", f"/v1/conversations/{cid}"))[0] == 200
    assert (await request(server, "GET", f"/v1/recordings/{rid}"))[0] == 404
    assert (await request(server, "GET", f"/v1/conversations/{cid}"))[0] == 404


def test_kill_9_loses_nothing_that_was_done(tmp_path):
    env = {**ENV, "HARK_DATA_DIR": str(tmp_path / "data")}

    async def turn(url: str) -> str:
        token = await mint_client_secret(url, KEY_A)
        client = CallClient(url, token)
        await client.connect()
        cid = client.events[0].data["session"]["conversation"]
        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the capital of Spain?"}],
                },
            }
        )
        mark = len(client.events)
        client.send({"type": "response.create"})
        await client.wait_for("response.done", after=mark, timeout=60)
        await asyncio.sleep(0.2)  # the writer commits within milliseconds
        await client.close()  # the client only; the server gets no hang-up, just kill -9
        return cid

    with running_server(env) as first:
        cid = asyncio.run(turn(first.url))
        os.kill(first.process.pid, signal.SIGKILL)  # no shutdown, no flush
        first.process.wait()
        assert first.process.returncode == -signal.SIGKILL
    with running_server(env) as second:
        status, items = asyncio.run(
            request(second, "GET", f"/v1/conversations/{cid}/items?order=asc")
        )
    assert status == 200
    assert [i["role"] for i in items["data"]] == ["user", "assistant"]
    assert items["data"][1]["content"][0]["transcript"]  # the reply as heard


def test_a_bad_persona_file_stops_the_server_naming_file_and_field():
    with tempfile.TemporaryDirectory() as folder:
        bad = Path(folder) / "pirate.toml"
        bad.write_text('name = "Pirate"\ninstructions = "Arr, $treasure"\n')
        env = {**os.environ, **ENV, "HARK_PERSONAS_DIR": folder, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "server", "serve"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "pirate.toml: instructions: unknown placeholder $treasure" in done.stderr


async def test_voice_profiles_upload_list_and_refuse_bad_files(server, tmp_path):
    from tests.speech import write_wav

    sentence = "I would like a cup of tea and a slice of lemon cake, please."
    write_wav(tmp_path / "me.wav", np.concatenate([silence(800), speak(sentence)]), 16000)
    write_wav(tmp_path / "short.wav", speak("Hi.", 16000), 16000)
    write_wav(tmp_path / "silent.wav", silence(5000), 16000)

    async def upload(files: dict[str, Any], key: str = KEY_A) -> tuple[int, Any]:
        form = aiohttp.FormData()
        for name, value in files.items():
            if isinstance(value, Path):
                form.add_field(name, value.read_bytes(), filename=value.name)
            elif isinstance(value, bytes):
                form.add_field(name, value, filename="upload.bin")
            else:
                form.add_field(name, value)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{server.url}/v1/voices", data=form, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                return resp.status, await resp.json()

    status, given = await upload({"name": "Me", "file": tmp_path / "me.wav", "text": sentence})
    assert status == 201, given
    assert set(given) >= {"id", "object", "name", "created_at", "duration_ms"}
    assert given["object"] == "voice" and given["id"].startswith("voice_")
    assert 3000 < given["duration_ms"] < 6000  # the leading silence trimmed
    status, heard = await upload({"name": "Whispered", "file": tmp_path / "me.wav"})
    assert status == 201 and "tea" in heard["transcript"].lower()  # Whisper wrote it
    _, listed = await request(server, "GET", "/v1/voices")
    ids = [v["id"] for v in listed["data"]]
    assert ids[0] == "joe" and given["id"] in ids and heard["id"] in ids
    _, theirs = await request(server, "GET", "/v1/voices", key=KEY_B)
    # Tenant B sees the built-in voices (Piper's and the language voices), none of A's.
    theirs_ids = [v["id"] for v in theirs["data"]]
    assert theirs_ids[0] == "joe" and not [i for i in theirs_ids if i.startswith("voice_")]
    assert set(theirs_ids) == set(ids) - {given["id"], heard["id"]}
    assert (await request(server, "GET", f"/v1/voices/{given['id']}", key=KEY_B))[0] == 404
    for files, code in (
        ({"name": "x", "file": tmp_path / "short.wav"}, "invalid_voice_audio"),
        ({"name": "x", "file": tmp_path / "silent.wav"}, "invalid_voice_audio"),
        ({"name": "x", "file": b"not audio at all"}, "invalid_voice_audio"),
        ({"name": "x", "file": b"\0" * (11 * 1024 * 1024)}, "file_too_large"),
        ({"file": tmp_path / "me.wav"}, "invalid_voice_name"),
        ({"name": "x"}, "missing_file"),
    ):
        status, error = await upload(files)
        assert status == 400 and error["error"]["code"] == code, (files.keys(), error)
    assert (await request(server, "DELETE", f"/v1/voices/{given['id']}"))[0] == 204
    assert (await request(server, "GET", f"/v1/voices/{given['id']}"))[0] == 404
    assert (await request(server, "DELETE", "/v1/voices/joe"))[0] == 400


def test_the_call_command_continues_a_conversation(server, tmp_path):
    """`python -m server call --conversation …` (the headless client's CLI)."""

    def call(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "server", "call", "--url", server.url, "--api-key", KEY_A,
             "--out", str(tmp_path / "reply.wav"), *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = call("--text", "What is the capital of Spain?")
    cid = next(line.split()[1] for line in first.splitlines() if line.startswith("conversation:"))
    second = call("--conversation", cid, "--text", "And of Portugal?")
    assert f"conversation: {cid}" in second
    assert second.count("conversation.item.done") >= 2  # the earlier items, replayed
    _, items = asyncio.run(request(server, "GET", f"/v1/conversations/{cid}/items?order=asc"))
    texts = [i["content"][0].get("text") for i in items["data"] if i["role"] == "user"]
    assert texts == ["What is the capital of Spain?", "And of Portugal?"]
