"""F5-TTS synthesis of a batch of text chunks, each in the voice of its own reference.

Blocking and single-threaded: it runs only on the F5 worker thread (server.engines
.fair_queue), which serves every call. F5 is not autoregressive: it fills in the mel
frames after the reference's in `nfe_steps` flow-matching steps (each a DiT forward pass
with classifier-free guidance), over a length estimated from the reference's speaking
rate; Vocos then turns the mel into 24 kHz audio. Chunks of several calls (each with its
own reference) share one batch, padded and masked, so a GPU serves calls side by side.

A running batch whose chunks were all cancelled (barge-in) stops at the next step.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from torch.nn.utils.rnn import pad_sequence

from server.engines.f5.loading import MelSettings
from server.engines.fair_queue import Batch, BatchAborted
from server.engines.voices import VoiceReference

log = logging.getLogger("hark.engines")

# F5-TTS's own inference defaults (f5_tts.infer.utils_infer).
TARGET_RMS = 0.1
SHORT_TEXT_BYTES = 10  # F5 slows a very short text down (speed 0.3) so it is not rushed
SHORT_TEXT_SPEED = 0.3
EDGE_FADE_S = 0.004  # a chunk's first and last 4 ms fade, so chunk joins do not click
MAX_PREPARED = 64


@dataclass(frozen=True)
class F5Options:
    """How F5 samples: `HARK_F5_*` settings (the README's configuration table)."""

    nfe_steps: int = 32
    sway: float = -1.0
    cfg_strength: float = 2.0
    speed: float = 1.0
    max_chunk_chars: int = 135
    max_reference_s: float = 12.0


@dataclass(frozen=True, eq=False)
class Chunk:
    """One job for the worker: a piece of text, in the voice of `reference`."""

    text: str
    reference: VoiceReference
    speed: float = 1.0  # the session's audio.output.speed, on top of HARK_F5_SPEED


@dataclass(frozen=True)
class PreparedReference:
    audio: torch.Tensor  # (samples,) float32 at 24 kHz, RMS-normalised, on the device
    mel: torch.Tensor  # (frames, n_mels) in the model's dtype, on the device
    text: str  # its transcript, ending in a space before the new text
    rms: float  # its level before normalising: the output is brought back to it


class F5Synthesizer:
    """The loaded model and vocoder, and the batch function the worker calls."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocoder: torch.nn.Module,
        mel: MelSettings,
        options: F5Options,
        convert_text: Callable[[list[str]], list[list[str]]],
        device: torch.device,
    ) -> None:
        self.model = model
        self.vocoder = vocoder
        self.mel = mel
        self.options = options
        self.device = device
        self._convert_text = convert_text
        self._prepared: OrderedDict[VoiceReference, PreparedReference] = OrderedDict()
        self._batch: Batch[Chunk, np.ndarray] | None = None
        self._steps = options.nfe_steps
        # Checked before every DiT pass: a batch nobody waits for any more stops there.
        model.transformer.register_forward_pre_hook(self._check_cancelled)

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    def _check_cancelled(self, module: torch.nn.Module, args: object) -> None:
        if self._batch is not None and self._batch.all_cancelled:
            raise BatchAborted

    def prepare(self, reference: VoiceReference) -> PreparedReference:
        """Mono 24 kHz, at most `max_reference_s`, normalised, with its mel (cached)."""
        if (cached := self._prepared.get(reference)) is not None:
            self._prepared.move_to_end(reference)
            return cached
        samples = reference.float32()[: int(self.options.max_reference_s * reference.sample_rate)]
        audio = torch.from_numpy(np.ascontiguousarray(samples))
        if reference.sample_rate != self.sample_rate:
            audio = torchaudio.functional.resample(audio, reference.sample_rate, self.sample_rate)
        rms = float(torch.sqrt(torch.mean(audio**2)).clamp(min=1e-6))
        if rms < TARGET_RMS:
            audio = audio * (TARGET_RMS / rms)
        audio = audio.to(self.device)
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            mel = self.model.mel_spec(audio[None]).permute(0, 2, 1)[0].to(dtype)
        text = reference.text.strip()
        if len(text[-1].encode("utf-8")) == 1:
            text += " "
        prepared = PreparedReference(audio=audio, mel=mel, text=text, rms=rms)
        self._prepared[reference] = prepared
        while len(self._prepared) > MAX_PREPARED:
            self._prepared.popitem(last=False)
        return prepared

    def frames_for(self, prepared: PreparedReference, text: str, speed: float = 1.0) -> int:
        """F5's length estimate: the new text at the reference's bytes-per-frame rate."""
        ref_frames = prepared.mel.shape[0]
        text_bytes = len(text.encode("utf-8"))
        short = text_bytes < SHORT_TEXT_BYTES
        speed = SHORT_TEXT_SPEED if short else self.options.speed * speed
        ref_bytes = max(1, len(prepared.text.encode("utf-8")))
        return ref_frames + max(1, int(ref_frames / ref_bytes * text_bytes / speed))

    def run(self, batch: Batch[Chunk, np.ndarray]) -> list[np.ndarray]:
        """The worker's batch function: one int16 24 kHz clip per chunk, in order."""
        started = time.perf_counter()
        prepared = [self.prepare(job.payload.reference) for job in batch.jobs]
        texts = [p.text + job.payload.text for p, job in zip(prepared, batch.jobs, strict=True)]
        frames = [
            self.frames_for(p, job.payload.text, job.payload.speed)
            for p, job in zip(prepared, batch.jobs, strict=True)
        ]
        self._batch = batch
        try:
            mels = self._sample(prepared, texts, frames)
        finally:
            self._batch = None
            self.model.transformer.clear_cache()
        clips = [self._vocode(mel, p) for mel, p in zip(mels, prepared, strict=True)]
        seconds = sum(len(c) for c in clips) / self.sample_rate
        log.debug(
            "f5: batch of %d, %.2f s of audio in %.2f s",
            len(clips),
            seconds,
            time.perf_counter() - started,
        )
        return clips

    def warm_up(self, reference: VoiceReference, batch_sizes: Sequence[int]) -> None:
        """Run each batch shape once (two steps: the kernels, not the quality, warm up)."""
        from server.engines.fair_queue import Job

        steps, self._steps = self._steps, 2
        try:
            for size in batch_sizes:
                jobs = [Job(i, Chunk("Hello there.", reference)) for i in range(size)]
                self.run(Batch(jobs))
        finally:
            self._steps = steps

    def _sample(
        self, prepared: list[PreparedReference], texts: list[str], frames: list[int]
    ) -> list[torch.Tensor]:
        cond = pad_sequence([p.mel for p in prepared], batch_first=True)
        lens = torch.tensor([p.mel.shape[0] for p in prepared], device=self.device)
        duration = torch.tensor(frames, device=self.device)
        with torch.inference_mode():
            out, _trajectory = self.model.sample(
                cond=cond,
                text=self._convert_text(texts),
                duration=duration,
                lens=lens,
                steps=self._steps,
                cfg_strength=self.options.cfg_strength,
                sway_sampling_coef=self.options.sway,
            )
        return [
            out[i, p.mel.shape[0] : frames[i]].to(torch.float32) for i, p in enumerate(prepared)
        ]

    def _vocode(self, mel: torch.Tensor, prepared: PreparedReference) -> np.ndarray:
        with torch.inference_mode():
            wave = self.vocoder.decode(mel.T[None])[0]
        if prepared.rms < TARGET_RMS:
            wave = wave * (prepared.rms / TARGET_RMS)
        audio = wave.clamp(-1.0, 1.0).cpu().numpy()
        fade = min(len(audio) // 2, int(EDGE_FADE_S * self.sample_rate))
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            audio[:fade] *= ramp
            audio[-fade:] *= ramp[::-1]
        return (audio * 32767.0).astype(np.int16)


_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
_CLAUSE = re.compile(r"(?<=[,;:—])\s+")


def split_text(text: str, max_chars: int) -> list[str]:
    """Cut `text` into chunks of at most `max_chars` (F5 handles ~135 characters, its
    own batch size): at sentence ends, else clause ends, else between words."""
    text = " ".join(text.split())
    if not text:
        return []
    chunks: list[str] = []
    for sentence in _SENTENCE.split(text):
        for piece in _fit(sentence, _CLAUSE, max_chars):
            for part in _fit(piece, re.compile(r"\s+"), max_chars):
                if chunks and len(chunks[-1]) + 1 + len(part) <= max_chars:
                    chunks[-1] += " " + part
                else:
                    chunks.append(part)
    return chunks


def _fit(text: str, separator: re.Pattern[str], max_chars: int) -> list[str]:
    """`text` split at `separator` into runs of at most `max_chars` (a single piece
    longer than that stays whole, for the next, finer separator)."""
    if len(text) <= max_chars:
        return [text]
    out: list[str] = []
    for piece in separator.split(text):
        if out and len(out[-1]) + 1 + len(piece) <= max_chars:
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out
