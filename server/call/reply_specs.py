"""What a reply should be: the session's settings, with a `response.create`'s overrides.

Unset options follow the session. An out-of-band response (`conversation: "none"`) is
written unless it asks for audio itself, so it never talks over the call by default;
`input` replaces the conversation as its context, resolving item references against it.
"""

from __future__ import annotations

from server.call.ports import CallControlError
from server.engines.chat import ChatMessage, LLMRequest
from server.protocol.conversation import Conversation, Item, chat_messages
from server.protocol.response_params import ItemReference, ResponseParams
from server.protocol.session_config import SessionConfig
from server.reply.spec import ReplySpec


def reply_spec(
    config: SessionConfig,
    history: list[ChatMessage],
    params: ResponseParams | None = None,
    conversation_id: str | None = None,
) -> ReplySpec:
    p = params or ResponseParams()
    tools = config.tools if p.tools is None else p.tools
    choice = p.tool_choice or config.tool_choice
    if choice.mode == "function" and not any(tool.name == choice.name for tool in tools):
        raise CallControlError(
            "invalid_value",
            f"tool_choice names {choice.name!r}, which is not among the tools",
            "response.tool_choice",
        )
    if p.output_modality is not None:
        modality = p.output_modality
    else:
        modality = "text" if p.out_of_band else config.output_modality
    return ReplySpec(
        request=LLMRequest(
            instructions=config.instructions if p.instructions is None else p.instructions,
            history=tuple(history),
            tools=tools,
            tool_choice=choice,
            max_tokens=p.max_output_tokens
            if p.sets_max_output_tokens
            else config.max_output_tokens,
        ),
        voice=p.voice or config.voice,
        speed=config.speed,
        modality=modality,
        in_conversation=not p.out_of_band,
        metadata=p.metadata,
        conversation_id=conversation_id,
        output_format=config.output_format,
    )


def context_history(conversation: Conversation, params: ResponseParams) -> list[ChatMessage]:
    """The history a response answers: the conversation, or its own `input`."""
    if params.input is None:
        return conversation.messages()
    items: list[Item] = []
    for index, entry in enumerate(params.input):
        if isinstance(entry, ItemReference):
            found = conversation.get(entry.id)
            if found is None:
                raise CallControlError(
                    "item_not_found",
                    f"No item with id '{entry.id[:64]}' to reference",
                    f"response.input[{index}].id",
                )
            items.append(found)
        else:
            items.append(entry)
    return chat_messages(items)
