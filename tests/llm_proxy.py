"""A fault-injecting HTTP proxy in front of a real OpenAI-compatible server (tests only).

It forwards requests to the real server and, when told, answers with an error status
instead (an overloaded server's 503) or cuts a streamed reply off after a number of
`data:` lines without its `[DONE]` (a server or a load balancer dying mid-reply). The
model behind it is real; only the failure is injected.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web


class FaultInjectingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.answer_status: int | None = None
        self.cut_after_lines: int | None = None
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.answer_status is not None and request.method == "POST":
            return web.json_response(
                {
                    "error": {
                        "message": "injected: the server is overloaded",
                        "type": "server_error",
                    }
                },
                status=self.answer_status,
            )
        path = request.match_info["path"].removeprefix("v1/")
        body = await request.read()
        async with aiohttp.ClientSession() as http:
            async with http.request(
                request.method,
                f"{self.upstream}/{path}",
                data=body,
                headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                response.content_type = upstream.content_type
                await response.prepare(request)
                lines = 0
                async for line in upstream.content:
                    await response.write(line)
                    if line.startswith(b"data:"):
                        lines += 1
                    if self.cut_after_lines is not None and lines >= self.cut_after_lines:
                        assert request.transport is not None
                        request.transport.close()  # gone mid-reply: no [DONE]
                        return response
                await response.write_eof()
                return response
