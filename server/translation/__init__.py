"""Live interpretation: OpenAI's Realtime Translation API (`/v1/realtime/translations`).

Source speech streams in, is cut at short pauses, transcribed, translated and spoken in
the target language while the speaker goes on. Separate from the conversational session
(`server.call`): no turns, no replies, no history; only the transports are shared.
"""
