"""What state a call is in, and why the server may end one.

The state is computed by the session from its parts (never assigned): USER_SPEAKING
while the VAD hears the user, SPEAKING while a reply's audio plays, THINKING while a turn
is being transcribed or a reply prepared, LISTENING otherwise.
"""

from __future__ import annotations

import enum

# Why a call was ended by the server, told to the client in an `error` event first.
END_MESSAGES = {
    "max_duration": "The call reached its maximum duration and was ended",
    "idle_timeout": "No audio was received for too long; the call was ended",
    "ice_timeout": "The call never connected (ICE) and was ended",
    "revoked": "The user's access was revoked; the call was ended",
    "server_shutdown": "The server is shutting down; the call was ended (call again)",
}


class State(enum.Enum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
