"""A tenant's call recordings over HTTP (Hark's own API; calls are recorded only when the
server allows it, `HARK_RECORDING=1`, and the call asks, `session.recording: true`).

GET    /v1/recordings                 newest first, ?limit=&after=&conversation_id=
GET    /v1/recordings/{id}            status, length, channels, the transcript's timings
GET    /v1/recordings/{id}/audio      the file: stereo Ogg Opus, caller left, assistant right
DELETE /v1/recordings/{id}            204; the file is erased

API keys only, each seeing its own tenant's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from server.calls.runtime import NodeRuntime
from server.protocol.tenancy import tenant_of
from server.store.recordings import FORMAT, RecordingStore
from signaling.auth import Authenticator
from signaling.conversations_api import check_query, page
from signaling.errors import ApiError


class RecordingsApi:
    def __init__(self, auth: Authenticator, runtime: NodeRuntime, retention_days: float) -> None:
        self.auth = auth
        self.runtime = runtime
        self.retention_days = retention_days

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/recordings", self.list)
        r.add_get("/v1/recordings/{recording_id}", self.get)
        r.add_get("/v1/recordings/{recording_id}/audio", self.audio)
        r.add_delete("/v1/recordings/{recording_id}", self.delete)

    def _tenant(self, request: web.Request) -> str:
        return tenant_of(self.auth.require_api_key(request).key)

    def _store(self) -> RecordingStore:
        store = self.runtime.require_memory().recordings
        assert isinstance(store, RecordingStore)
        return store

    async def list(self, request: web.Request) -> web.Response:
        check_query(request, ("limit", "after", "conversation_id"))
        tenant = self._tenant(request)
        query = request.query
        result = await self._store().list(
            tenant,
            limit=query.get("limit"),
            after=query.get("after"),
            conversation_id=query.get("conversation_id"),
        )
        data = [r.to_dict(self.retention_days) for r in result.data]
        return web.json_response(page(data, result.has_more, lambda r: r["id"]))

    async def get(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        record = await self._store().get(tenant, request.match_info["recording_id"])
        return web.json_response(record.to_dict(self.retention_days))

    async def audio(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = await self._store().get(tenant, request.match_info["recording_id"])
        path = Path(record.path)
        if not await asyncio.to_thread(path.is_file):
            raise ApiError(404, "recording_audio_missing", "The recording has no audio (yet)")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": FORMAT,
                "Content-Disposition": f'attachment; filename="{record.id}.ogg"',
            },
        )

    async def delete(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        await self._store().delete(tenant, request.match_info["recording_id"])
        return web.Response(status=204)
