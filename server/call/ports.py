"""What client events may do to a call: the one port the event dispatcher drives.

The dispatcher (`server.call.client_events`) parses and validates what a client sends;
the call decides what it means for the reply, the track and the history. Keeping the
verbs here, small and named for what the client asked, means the rules for cancelling,
clearing and truncating live in one place (the session) whatever transport carried the
request: a WebRTC data channel, a WebSocket, or a sideband channel beside either.
"""

from __future__ import annotations

from typing import Any, Protocol

from server.protocol.conversation import Item
from server.protocol.response_params import ResponseParams
from server.protocol.session_config import SessionConfig


class CallControlError(Exception):
    """A client request the call refuses; becomes an `error` event with this code."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class CallControl(Protocol):
    """The call as client events see it. Methods raise `CallControlError` to refuse."""

    @property
    def config(self) -> SessionConfig: ...

    def send(self, event: dict[str, Any]) -> None:
        """An event to the client (e.g. `conversation.item.retrieved`)."""

    def report_error(
        self,
        type_: str,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """An `error` event to the client, counted for operators."""

    def update_session(self, update: dict[str, Any]) -> None:
        """Apply a `session.update`; raises `InvalidParam` for a bad field."""

    def append_input(self, audio: str) -> None:
        """`input_audio_buffer.append` (base64 in `audio.input.format`): WebSocket calls
        listen to it; over WebRTC the microphone track is the input, and this refuses."""

    def commit_input(self) -> None:
        """Commit the input buffer as a user turn: the manual buffer (turn detection off),
        or the turn in progress, ended now."""

    def clear_input(self) -> None:
        """Forget the audio of the turn in progress."""

    def add_item(self, item: Item) -> None:
        """A client-created conversation item, announced back to the client (refused: a
        `function_call_output` for a call the conversation does not hold)."""

    def find_item(self, item_id: str) -> Item | None: ...

    def delete_item(self, item_id: str) -> None: ...

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played only `audio_end_ms` of an assistant item: keep what was heard."""

    def create_response(self, params: ResponseParams) -> None:
        """Start a reply now with `response.create`'s options (refused while one is in
        progress, unless it is an out-of-band written reply; refused in transcription
        sessions)."""

    def cancel_response(self, response_id: str | None) -> None:
        """Stop the reply in progress (refused when there is none, or another is named)."""

    def clear_output(self) -> None:
        """Drop the audio not yet played (`output_audio_buffer.clear`)."""

    def client_stats(self, stats: dict[str, Any]) -> None:
        """The client's own view of the connection (`hark.client_stats`), validated."""
