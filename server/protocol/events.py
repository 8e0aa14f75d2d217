"""Builders for server → client events on `oai-events`, in OpenAI Realtime's GA shapes.

Official SDKs validate every event against the GA schemas and silently drop what does not
match, so the shapes live here in one place: every event has an `event_id`, assistant
items carry `output_audio` content, and only GA names are used. Hark's own events use
the `hark.` prefix.
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


def transcription_completed(item_id: str, transcript: str, seconds: float) -> Event:
    return event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage={"type": "duration", "seconds": round(seconds, 3)},
    )


def _response(
    response_id: str,
    status: str,
    voice: str,
    output: list[dict[str, Any]],
    status_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_default",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": voice}},
        "usage": None,
        "metadata": None,
    }


def response_created(response_id: str, voice: str) -> Event:
    return event("response.created", response=_response(response_id, "in_progress", voice, []))


def output_item_added(response_id: str, item: Item) -> Event:
    return event(
        "response.output_item.added",
        response_id=response_id,
        output_index=0,
        item=item.to_dict() | {"content": []},
    )


def content_part_added(response_id: str, item_id: str) -> Event:
    return event(
        "response.content_part.added",
        response_id=response_id,
        item_id=item_id,
        output_index=0,
        content_index=0,
        part={"type": "audio", "transcript": ""},
    )


def transcript_delta(response_id: str, item_id: str, delta: str) -> Event:
    return event(
        "response.output_audio_transcript.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=0,
        content_index=0,
        delta=delta,
    )


def output_audio_buffer(kind: str, response_id: str) -> Event:
    """`output_audio_buffer.started` / `.stopped` / `.cleared`."""
    return event(f"output_audio_buffer.{kind}", response_id=response_id)


def response_finished(
    response_id: str,
    item: Item,
    previous_item_id: str | None,
    status: str,
    reason: str | None,
    voice: str,
) -> list[Event]:
    """The closing sequence of a response, from `output_audio.done` to `response.done`."""
    where = {"response_id": response_id, "item_id": item.id, "output_index": 0, "content_index": 0}
    transcript = item.text or ""
    details = None
    if status == "cancelled":
        details = {"type": "cancelled", "reason": reason}
    elif status == "failed":
        code = reason or "response_failed"  # an engine fault's code (engines.faults)
        details = {"type": "failed", "error": {"type": "server_error", "code": code}}
    return [
        event("response.output_audio.done", **where),
        event("response.output_audio_transcript.done", **where, transcript=transcript),
        event(
            "response.content_part.done", **where, part={"type": "audio", "transcript": transcript}
        ),
        event(
            "response.output_item.done",
            response_id=response_id,
            output_index=0,
            item=item.to_dict(),
        ),
        item_done(previous_item_id, item),
        event(
            "response.done",
            response=_response(response_id, status, voice, [item.to_dict()], details),
        ),
    ]


def hark_metrics(response_id: str, timings: dict[str, Any]) -> Event:
    return event("hark.metrics", response_id=response_id, turn=timings)


def hark_interruption(status: str, response_id: str, audio_end_ms: int) -> Event:
    """Hark's own: speech over a reply paused it, then it was `confirmed` (cancelled) or
    `resumed` (a false interruption); `audio_end_ms` is the reply's playout position."""
    return event(
        "hark.interruption", status=status, response_id=response_id, audio_end_ms=audio_end_ms
    )
