"""An LLM behind any OpenAI-compatible `/chat/completions` server: vLLM, llama.cpp, Ollama.

This is how Hark scales past one CPU: the model runs on GPU servers that batch many
calls, and Hark only streams tokens. Closing a reply closes its HTTP response, which is
how these servers learn to stop generating for a caller who barged in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp

from server.engines.base import ChatMessage, EngineUnavailable

log = logging.getLogger("hark.engines")

_CONNECT_TIMEOUT_S = 10.0
# Between two streamed tokens; a busy server may queue a request for a while first.
_READ_TIMEOUT_S = 60.0


class LLMServerError(RuntimeError):
    """The LLM server answered, but with an error."""


class OpenAICompatibleLLM:
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", max_tokens: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
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

    async def stream(self, instructions: str, history: list[ChatMessage]) -> AsyncIterator[str]:
        messages = [{"role": m.role, "content": m.content} for m in history]
        if instructions:
            messages.insert(0, {"role": "system", "content": instructions})
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        url = f"{self.base_url}/chat/completions"
        response = await self._http().post(url, json=payload)
        try:
            if response.status != 200:
                body = await response.text()
                raise LLMServerError(f"{url} answered {response.status}: {_excerpt(body)}")
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                delta = _delta(data, url)
                if delta:
                    yield delta
        finally:
            # Close, not release: a half-read stream must drop the connection so the
            # server notices and stops generating.
            response.close()

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


def _delta(data: str, url: str) -> str:
    """The text in one streamed chunk; an error object in the stream is raised."""
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise LLMServerError(f"{url} streamed invalid JSON: {_excerpt(data)}") from exc
    if not isinstance(event, dict):
        raise LLMServerError(f"{url} streamed an unexpected event: {_excerpt(data)}")
    if "error" in event:
        raise LLMServerError(f"{url} failed mid-stream: {_excerpt(json.dumps(event['error']))}")
    choices = event.get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content")
    return content if isinstance(content, str) else ""


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
