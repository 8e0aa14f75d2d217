"""Voice profiles over HTTP (Hark's own API, for a cloning TTS such as F5-TTS).

POST   /v1/voices        multipart: name, file (3-15 s WAV or Ogg), text (its transcript,
                         optional: the server's Whisper writes it) → 201 voice
GET    /v1/voices        the TTS engine's built-in voices (with the language each speaks:
                         `joe` English, `es-alpha` Spanish, …) and the tenant's own
GET    /v1/voices/{id}   one (built-in or the tenant's)
DELETE /v1/voices/{id}   204

API keys only. The upload is read with its own cap (HARK_MAX_BODY_BYTES is for JSON);
anything that cannot be a reference (not audio, too short, too long, silent, too big) is
a 400 that says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from media.resample import Resampler
from media.voice_sample import RATE, VoiceSampleError, prepare
from server.calls.runtime import NodeRuntime
from server.engines.base import SpeechToText
from server.errors import Overloaded
from server.protocol.tenancy import tenant_of
from server.store.voices import VoiceStore, built_in_voice, check_name
from signaling.auth import Authenticator
from signaling.errors import ApiError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_FIELD_BYTES = 4096


def _bad(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(400, code, message, param=param)


def to_16k(pcm: np.ndarray) -> np.ndarray:
    resampler = Resampler(16_000)
    return np.concatenate([resampler.pcm(pcm, RATE), resampler.flush()])


class VoicesApi:
    def __init__(
        self,
        auth: Authenticator,
        runtime: NodeRuntime,
        stt: SpeechToText,
        built_in: Mapping[str, str],
    ) -> None:
        """`built_in`: the TTS engine's own voices, each with the language it speaks."""
        self.auth = auth
        self.runtime = runtime
        self.stt = stt
        self.built_in = built_in

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/voices", self.create)
        r.add_get("/v1/voices", self.list)
        r.add_get("/v1/voices/{voice_id}", self.get)
        r.add_delete("/v1/voices/{voice_id}", self.delete)

    def _tenant(self, request: web.Request) -> str:
        return tenant_of(self.auth.require_api_key(request).key)

    def _store(self) -> VoiceStore:
        self.runtime.require_memory()
        store = self.runtime.voices
        if store is None:
            raise Overloaded("server_starting", "Hark is still starting", retry_after_s=2)
        return store

    async def _form(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()  # no file can come this way: fields only
            return {k: str(v).encode() for k, v in form.items() if isinstance(v, str)}
        if request.content_type != "multipart/form-data":
            raise ApiError(
                415, "unsupported_media_type", "Send multipart/form-data: name, file, text"
            )
        if (request.content_length or 0) > MAX_UPLOAD_BYTES + 64 * 1024:
            raise _bad("file_too_large", f"The upload exceeds {MAX_UPLOAD_BYTES >> 20} MB", "file")
        fields: dict[str, Any] = {}
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                limit = MAX_UPLOAD_BYTES if part.name == "file" else MAX_FIELD_BYTES
                data = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        what = f"{limit >> 20} MB" if part.name == "file" else f"{limit} bytes"
                        raise _bad(
                            "file_too_large" if part.name == "file" else "invalid_field",
                            f"'{part.name}' exceeds {what}",
                            part.name,
                        )
                fields[part.name] = bytes(data)
        except (HttpProcessingError, ValueError, AssertionError) as exc:
            if isinstance(exc, ApiError):
                raise
            raise _bad(
                "invalid_multipart", f"The multipart body is malformed: {exc}"[:300]
            ) from exc
        return fields

    async def create(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        store = self._store()
        fields = await self._form(request)
        try:
            name = check_name(fields.get("name", b"").decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _bad("invalid_voice_name", "name must be UTF-8 text", "name") from exc
        audio = fields.get("file")
        if not audio:
            raise _bad("missing_file", "Send the reference audio as the 'file' field", "file")
        try:
            pcm = await asyncio.to_thread(prepare, audio)
        except VoiceSampleError as exc:
            raise _bad("invalid_voice_audio", str(exc), "file") from exc
        try:
            text = fields.get("text", b"").decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise _bad("invalid_voice_text", "text must be UTF-8 text", "text") from exc
        if not text:
            if not self.runtime.readiness.ready:
                raise Overloaded(
                    "server_starting",
                    "Whisper is still loading; retry, or send the transcript as 'text'",
                    retry_after_s=5,
                )
            heard = await self.stt.transcribe(await asyncio.to_thread(to_16k, pcm))
            text = heard.strip()
            if not text:
                raise _bad(
                    "invalid_voice_audio", "No words were heard in the audio; send 'text'", "file"
                )
        record = await store.create(tenant, name, pcm, RATE, text)
        return web.json_response(record.to_dict(), status=201)

    async def list(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        own = [record.to_dict() for record in await self._store().list(tenant)]
        data = [built_in_voice(name, lang) for name, lang in self.built_in.items()] + own
        return web.json_response({"object": "list", "data": data})

    async def get(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        voice_id = request.match_info["voice_id"]
        if voice_id in self.built_in:
            return web.json_response(built_in_voice(voice_id, self.built_in[voice_id]))
        return web.json_response((await self._store().get(tenant, voice_id)).to_dict())

    async def delete(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        voice_id = request.match_info["voice_id"]
        if voice_id in self.built_in:
            raise ApiError(400, "built_in_voice", f"'{voice_id}' is built in and cannot be deleted")
        await self._store().delete(tenant, voice_id)
        return web.Response(status=204)
