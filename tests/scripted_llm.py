"""A fake OpenAI-compatible chat server that always answers the same words (tests only).

For end-to-end tests of the voice path in languages the embedded 270M model speaks
poorly: the server under test runs with HARK_LLM=openai pointed here, so everything but
the words (turn taking, Whisper, the reply run, the TTS, the transport) is real. It
keeps each request it was sent, so a test can check what the LLM was told. It runs on
its own thread: the Hark server asks for `/models` while the test is still starting it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeScriptedChatServer:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "fake-scripted"}]})
                self._send(200, "application/json", body.encode())

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                fake.requests.append(json.loads(self.rfile.read(size) or b"{}"))
                lines = [_chunk({"role": "assistant", "content": ""})]
                lines += [_chunk({"content": word + " "}) for word in fake.reply.split(" ")]
                lines += [_chunk({}, "stop"), "data: [DONE]\n\n"]
                self._send(200, "text/event-stream", "".join(lines).encode())

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeScriptedChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def system_prompts(self) -> list[str]:
        return [
            m["content"]
            for r in self.requests
            for m in r.get("messages", [])
            if m.get("role") == "system" and isinstance(m.get("content"), str)
        ]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n"
