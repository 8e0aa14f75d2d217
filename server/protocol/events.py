"""Builders for server → client events on `oai-events`, in OpenAI Realtime's GA shapes.

Official SDKs validate every event against the GA schemas and silently drop what does not
match, so the shapes live here in one place: every event has an `event_id`, assistant
items carry `output_audio` content, and only GA names are used. Hark's own events use
the `hark.` prefix. A response's own events are in `server.protocol.response_events`.
"""

from __future__ import annotations

from typing import Any

from server.protocol.conversation import Item, new_id

Event = dict[str, Any]


def event(type_: str, **fields: Any) -> Event:
    return {"event_id": new_id("event"), "type": type_, **fields}


def error(
    type_: str,
    code: str,
    message: str,
    *,
    param: str | None = None,
    event_id: str | None = None,
) -> Event:
    return event(
        "error",
        error={
            "type": type_,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    )


def session_created(session: dict[str, Any]) -> Event:
    return event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> Event:
    return event("session.updated", session=session)


def speech_started(audio_start_ms: int, item_id: str) -> Event:
    return event(
        "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
    )


def speech_stopped(audio_end_ms: int, item_id: str) -> Event:
    return event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def committed(previous_item_id: str | None, item_id: str) -> Event:
    return event("input_audio_buffer.committed", previous_item_id=previous_item_id, item_id=item_id)


def input_cleared() -> Event:
    return event("input_audio_buffer.cleared")


def item_added(previous_item_id: str | None, item: Item) -> Event:
    return event("conversation.item.added", previous_item_id=previous_item_id, item=item.to_dict())


def item_done(previous_item_id: str | None, item: Item) -> Event:
    return event("conversation.item.done", previous_item_id=previous_item_id, item=item.to_dict())


def item_retrieved(item: Item) -> Event:
    return event("conversation.item.retrieved", item=item.to_dict())


def item_deleted(item_id: str) -> Event:
    return event("conversation.item.deleted", item_id=item_id)


def item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> Event:
    return event(
        "conversation.item.truncated",
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=audio_end_ms,
    )


def transcription_delta(item_id: str, delta: str) -> Event:
    """More of a user turn's words, before it is committed (at the user's pauses)."""
    return event(
        "conversation.item.input_audio_transcription.delta",
        item_id=item_id,
        content_index=0,
        delta=delta,
    )


def transcription_failed(item_id: str, code: str, message: str) -> Event:
    return event(
        "conversation.item.input_audio_transcription.failed",
        item_id=item_id,
        content_index=0,
        error={"type": "server_error", "code": code, "message": message, "param": None},
    )


def transcription_completed(
    item_id: str, transcript: str, seconds: float, detected_language: str | None = None
) -> Event:
    """A turn's words; `languages` (OpenAI's field) when Whisper detected the language."""
    fields: dict[str, Any] = {}
    if detected_language:
        fields["languages"] = [{"code": detected_language}]
    return event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage={"type": "duration", "seconds": round(seconds, 3)},
        **fields,
    )


def output_audio_buffer(kind: str, response_id: str) -> Event:
    """`output_audio_buffer.started` / `.stopped` / `.cleared`."""
    return event(f"output_audio_buffer.{kind}", response_id=response_id)


def hark_metrics(response_id: str, timings: dict[str, Any]) -> Event:
    return event("hark.metrics", response_id=response_id, turn=timings)


def hark_interruption(status: str, response_id: str, audio_end_ms: int) -> Event:
    """Hark's own: speech over a reply paused it, then it was `confirmed` (cancelled) or
    `resumed` (a false interruption); `audio_end_ms` is the reply's playout position."""
    return event(
        "hark.interruption", status=status, response_id=response_id, audio_end_ms=audio_end_ms
    )
