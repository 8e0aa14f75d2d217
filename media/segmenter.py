"""Per-frame speech probabilities -> user turns, with OpenAI `server_vad` semantics.

- Idle, it keeps the last `prefix_padding_ms` of audio so a turn's first syllable,
  which the VAD scores late, still reaches STT.
- Speech starts after `START_FRAMES` consecutive frames at or above `threshold`. Two
  frames (64 ms) ignore the single-frame spikes Silero gives on clicks and noise onsets,
  yet keep barge-in fast. `audio_start_ms` is the onset minus the padding available.
- Once speaking, a frame is silence only below `threshold - HYSTERESIS` (floor 0.01), so
  the soft ends of words don't chop a sentence. Speech stops after `silence_duration_ms`
  of continuous silence; like OpenAI, the stop position and the segment include it.
- A segment is cut at `max_segment_ms` so memory stays bounded on endless noise.
- After a stop the padding starts empty: like OpenAI's committed input buffer, two
  segments never share audio.
- Inside a turn, `pause_ms` of silence gives `SpeechPaused` (with the audio so far) and
  voice after it gives `SpeechResumed`: the session transcribes at the pause, so the
  transcript is ready when the turn ends, and semantic end-of-turn can end the turn early
  with `end_turn()` once the words look finished.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

START_FRAMES = 2
HYSTERESIS = 0.15
MAX_SEGMENT_MS = 30_000
# One frame under the silence threshold is a pause. Silero scores the end of speech
# ~100 ms late (its window and state carry the last syllable), so the first frame it
# calls silence is already past the voice: on 20 spoken questions a 32 ms pause came
# 32 ms sooner than 64 ms with the same words transcribed, and one pause fired inside a
# question (none at 64 ms). A pause costs only a speculative transcript.
PAUSE_MS = 32


@dataclass
class TurnDetection:
    """The tunable part of OpenAI's `turn_detection: {type: "server_vad", ...}`."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold must be a number between 0 and 1, got {t!r}")
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    @property
    def silence_threshold(self) -> float:
        """Below this a frame counts as silence once speech has started."""
        return max(self.threshold - HYSTERESIS, 0.01)


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, eq=False)
class SpeechStopped:
    audio_end_ms: int
    audio: np.ndarray  # int16 1-D, from the prefix padding through the trailing silence
    trailing_silence_ms: int = 0  # how long the voice had been silent at the stop


@dataclass(frozen=True, eq=False)
class SpeechPaused:
    """The voice stopped `pause_ms` ago; the turn may or may not be over."""

    audio_end_ms: int
    audio: np.ndarray  # the segment so far, pause included


@dataclass(frozen=True)
class SpeechResumed:
    audio_end_ms: int


Event = SpeechStarted | SpeechStopped | SpeechPaused | SpeechResumed


class SpeechSegmenter:
    """Feed it every frame with its VAD probability; it says when turns start and stop."""

    def __init__(
        self,
        params: TurnDetection,
        frame_ms: int = 32,
        sample_rate: int = 16000,
        *,
        start_frames: int = START_FRAMES,
        max_segment_ms: int = MAX_SEGMENT_MS,
        pause_ms: int = PAUSE_MS,
    ) -> None:
        if frame_ms <= 0 or sample_rate <= 0 or start_frames < 1 or max_segment_ms <= 0:
            raise ValueError("frame_ms, sample_rate, start_frames, max_segment_ms must be > 0")
        if pause_ms <= 0:
            raise ValueError("pause_ms must be > 0")
        self.pause_ms = pause_ms
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self.frame_samples = frame_ms * sample_rate // 1000
        self.start_frames = start_frames
        self.max_segment_ms = max_segment_ms
        self.params = params
        self._idle: deque[np.ndarray] = deque()
        self._segment: list[np.ndarray] = []
        self._speaking = False
        self._over = 0  # consecutive idle frames at or above threshold
        self._silent_ms = 0  # consecutive silence while speaking
        self._segment_ms = 0
        self._voiced_ms = 0
        self._paused = False
        self.update(params)

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def silent_ms(self) -> int:
        """Continuous silence at the end of the current turn (0 when idle or voiced)."""
        return self._silent_ms

    @property
    def voiced_ms(self) -> int:
        """Frames of the current turn that were not silence, in ms."""
        return self._voiced_ms

    @property
    def paused(self) -> bool:
        """Inside a turn and silent for at least `pause_ms`."""
        return self._paused

    def audio(self) -> np.ndarray:
        """The current turn's audio so far (empty when idle)."""
        if not self._segment:
            return np.zeros(0, np.int16)
        return np.concatenate(self._segment).astype(np.int16, copy=False)

    def update(self, params: TurnDetection) -> None:
        """Apply new parameters (a `session.update`) without losing the current turn."""
        self.params = params
        prefix_frames = math.ceil(params.prefix_padding_ms / self.frame_ms)
        self._idle = deque(self._idle, maxlen=prefix_frames + self.start_frames)

    def reset(self) -> None:
        """Drop all audio and return to idle (input buffer cleared, or a new call)."""
        self._idle.clear()
        self._segment = []
        self._speaking = False
        self._over = 0
        self._silent_ms = 0
        self._segment_ms = 0
        self._voiced_ms = 0
        self._paused = False

    def end_turn(self, end_ms: int) -> SpeechStopped | None:
        """End the current turn now (semantic end-of-turn decided it is over)."""
        return self._stop(end_ms) if self._speaking else None

    def push(self, frame: np.ndarray, probability: float, audio_end_ms: int) -> list[Event]:
        """One frame, its probability, and the audio clock at its end."""
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"expected {self.frame_samples} samples, got shape {frame.shape}")
        frame = np.array(frame, dtype=np.int16)  # our own copy: callers may reuse buffers
        if self._speaking:
            return self._push_speaking(frame, probability, audio_end_ms)
        return self._push_idle(frame, probability, audio_end_ms)

    def _push_idle(self, frame: np.ndarray, probability: float, end_ms: int) -> list[Event]:
        self._idle.append(frame)
        self._over = self._over + 1 if probability >= self.params.threshold else 0
        if self._over < self.start_frames:
            return []
        frames = list(self._idle)
        onset, before = frames[-self._over :], frames[: -self._over]
        padding_samples = self.params.prefix_padding_ms * self.sample_rate // 1000
        padding = np.concatenate([frame[:0], *before])
        padding = padding[len(padding) - min(padding_samples, len(padding)) :]
        onset_ms = end_ms - self._over * self.frame_ms
        start_ms = onset_ms - round(len(padding) * 1000 / self.sample_rate)
        self._segment = [padding, *onset]
        self._segment_ms = end_ms - start_ms
        self._speaking = True
        self._silent_ms = 0
        self._voiced_ms = len(onset) * self.frame_ms
        self._paused = False
        self._over = 0
        self._idle.clear()
        return [SpeechStarted(audio_start_ms=start_ms)]

    def _push_speaking(self, frame: np.ndarray, probability: float, end_ms: int) -> list[Event]:
        self._segment.append(frame)
        self._segment_ms += self.frame_ms
        events: list[Event] = []
        if probability < self.params.silence_threshold:
            self._silent_ms += self.frame_ms
        else:
            self._silent_ms = 0
            self._voiced_ms += self.frame_ms
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(end_ms))
        silent = self._silent_ms
        silence_done = silent > 0 and silent >= self.params.silence_duration_ms
        if silence_done or self._segment_ms >= self.max_segment_ms:
            return [*events, self._stop(end_ms)]
        if not self._paused and silent >= self.pause_ms:
            self._paused = True
            events.append(SpeechPaused(end_ms, self.audio()))
        return events

    def _stop(self, end_ms: int) -> SpeechStopped:
        audio = self.audio()
        silent = self._silent_ms
        self.reset()
        return SpeechStopped(audio_end_ms=end_ms, audio=audio, trailing_silence_ms=silent)
