"""An LLM behind any OpenAI-compatible `/chat/completions` server: vLLM, llama.cpp, Ollama.

This is how Hark scales past one CPU: the model runs on GPU servers that batch many
calls, and Hark only streams tokens. Closing a reply closes its HTTP response, which is
how these servers learn to stop generating for a caller who barged in (vLLM aborts the
request). Every request starts with the same persona, for vLLM's prefix cache;
`priority` is sent when set (vLLM's `--scheduling-policy priority`). A server that is
down, slow to its first token, failing or cutting its stream raises an `EngineFault`
the reply side turns into an apology.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from server.engines.base import EngineUnavailable
from server.engines.chat import ChatMessage, LLMOutput, LLMRequest, ToolChoice, ToolSpec
from server.engines.faults import EngineFault
from server.engines.openai_chunks import ChunkError, ChunkReader

log = logging.getLogger("hark.engines")

_CONNECT_TIMEOUT_S = 10.0
# Between two streamed tokens; a busy server may queue a request for a while first.
_READ_TIMEOUT_S = 60.0
# OpenAI's own cap on a Realtime response's max_output_tokens.
MAX_OUTPUT_TOKENS = 4096


class LLMServerError(EngineFault):
    """The LLM server answered, but with an error (a status, an error object, bad JSON)."""

    def __init__(self, message: str) -> None:
        super().__init__("llm", "llm_error", message)


class OpenAICompatibleLLM:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        max_tokens: int = 200,
        *,
        first_token_timeout_s: float = 0.0,
        priority: int | None = None,
    ) -> None:
        """`first_token_timeout_s`: a reply with no token by then fails (0: no limit);
        `priority`: vLLM's request priority (sent only when set)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.first_token_timeout_s = first_token_timeout_s
        self.priority = priority
        self._session: aiohttp.ClientSession | None = None

    async def load(self) -> None:
        """Check the server answers; with no model configured, use the first it serves."""
        if not self.base_url:
            raise EngineUnavailable("HARK_LLM=openai needs HARK_LLM_BASE_URL")
        url = f"{self.base_url}/models"
        started = time.perf_counter()
        try:
            async with self._http().get(url) as response:
                body = await response.text()
                if response.status != 200:
                    raise EngineUnavailable(
                        f"LLM server at {url} answered {response.status}: {_excerpt(body)}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailable(f"cannot reach the LLM server at {url}: {exc!r}") from exc
        if not self.model:
            self.model = _first_model(body, url)
        log.info(
            "LLM server %s (model %s) ready in %.2f s",
            self.base_url,
            self.model,
            time.perf_counter() - started,
        )

    def build_request(self, request: LLMRequest) -> dict[str, Any]:
        """The chat request for one reply: the one place its body is built.

        The instructions (the persona) come first and stay the same from turn to turn,
        then the conversation in order, so each request begins with the previous one's
        text and vLLM's prefix cache skips recomputing it (anything that varies per turn
        belongs after the prefix, never in front of it).
        """
        payload = chat_payload(request, self.model, self.max_tokens)
        if self.priority is not None:
            payload["priority"] = self.priority
        return payload

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMOutput]:
        """The reply's text deltas and tool calls. Faults are `EngineFault`s: llm_unavailable (no
        connection), llm_timeout (no first token in time), llm_error (an error answer),
        llm_stream_cut (the stream broke off before its end)."""
        url = f"{self.base_url}/chat/completions"
        payload = self.build_request(request)
        reader = ChunkReader()
        loop = asyncio.get_running_loop()
        limit = self.first_token_timeout_s
        deadline = loop.time() + limit if limit > 0 else None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._post(url, payload)
        except TimeoutError as exc:
            raise _timed_out(url, limit) from exc
        try:
            if response.status != 200:
                body = await response.text()
                raise LLMServerError(f"{url} answered {response.status}: {_excerpt(body)}")
            lines = aiter(response.content)
            finished = False
            while True:
                try:
                    raw = await _read_line(lines, deadline, loop)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if deadline is not None:
                        raise _timed_out(url, limit) from exc
                    raise EngineFault("llm", "llm_stream_cut", f"{url} stalled mid-stream") from exc
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                    raise EngineFault(
                        "llm", "llm_stream_cut", f"{url} broke off its stream: {exc!r}"
                    ) from exc
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" lines
                deadline = None  # the server is answering: the first-token limit is met
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                try:
                    outputs = reader.feed(data)
                except ChunkError as exc:
                    raise LLMServerError(f"{url} {exc}") from exc
                for output in outputs:
                    yield output
            if not finished:
                raise EngineFault("llm", "llm_stream_cut", f"{url} ended its stream early")
            for output in reader.finish():
                yield output
        finally:
            # Close, not release: a half-read stream must drop the connection so the
            # server notices and stops generating.
            response.close()

    async def _post(self, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection if a pooled one turns out dead (the
        server restarted since): nothing was generated, so nothing is repeated."""
        for attempt in range(2):
            try:
                return await self._http().post(url, json=payload)
            except aiohttp.ClientConnectorError as exc:
                raise EngineFault("llm", "llm_unavailable", f"cannot reach {url}: {exc}") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt:
                    raise EngineFault(
                        "llm", "llm_unavailable", f"{url} dropped the connection: {exc!r}"
                    ) from exc
                log.info("LLM server %s dropped a kept-alive connection; retrying", url)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            timeout = aiohttp.ClientTimeout(
                sock_connect=_CONNECT_TIMEOUT_S, sock_read=_READ_TIMEOUT_S
            )
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=timeout, read_bufsize=1 << 20
            )
        return self._session


async def _read_line(
    lines: AsyncIterator[bytes], deadline: float | None, loop: asyncio.AbstractEventLoop
) -> bytes:
    """The next line, by `deadline` (loop time) while no token has come yet."""
    if deadline is None:
        return await anext(lines)
    return await asyncio.wait_for(anext(lines), max(0.0, deadline - loop.time()))


def _timed_out(url: str, limit: float) -> EngineFault:
    return EngineFault("llm", "llm_timeout", f"{url} sent no first token within {limit:g} s")


def chat_payload(request: LLMRequest, model: str, default_max_tokens: int) -> dict[str, Any]:
    """The `/chat/completions` body for `request`: messages in the chat format (an
    assistant turn with `tool_calls`, then one `tool` message per output), and the tools
    with `tool_choice` only when there are tools to offer."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages += [_message(m) for m in request.history]
    max_tokens = request.max_tokens or default_max_tokens
    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": min(max_tokens, MAX_OUTPUT_TOKENS),
        "stream": True,
    }
    if request.tools:
        payload["tools"] = [_tool(tool) for tool in request.tools]
        payload["tool_choice"] = _tool_choice(request.tool_choice)
    return payload


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _first_model(body: str, url: str) -> str:
    try:
        return str(json.loads(body)["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EngineUnavailable(
            f"{url} lists no model; set HARK_LLM_MODEL: {_excerpt(body)}"
        ) from exc


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
