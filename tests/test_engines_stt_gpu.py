"""Whisper's GPU settings, checked on this CPU with the packaged tiny.en: the device and
compute type chosen, a model by name or folder, clear refusals, and utterances of
several calls decoded in one batch with the same words as one by one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from server.config import Config
from server.engines.base import EngineUnavailable
from server.engines.factory import build_stt
from server.engines.faster_whisper_stt import (
    FasterWhisperSTT,
    compute_type_for,
    packaged_model,
    resolve_device,
)
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Tell me about the moon.",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
]


def test_devices_and_compute_types() -> None:
    assert compute_type_for("cuda") == "float16"
    assert compute_type_for("cpu") == "int8"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"  # no GPU here
    with pytest.raises(EngineUnavailable, match="sees no CUDA GPU"):
        resolve_device("cuda")


def test_the_settings_reach_the_engine(tmp_path: Path) -> None:
    stt = build_stt(
        Config.from_env(
            {
                "HARK_STT_DEVICE": "auto",
                "HARK_STT_MODEL": str(tmp_path),
                "HARK_STT_COMPUTE_TYPE": "int8_float16",
                "HARK_STT_BATCH": "6",
            }
        )
    )
    assert isinstance(stt, FasterWhisperSTT)
    assert (stt.device, stt.compute_type, stt.batch) == ("auto", "int8_float16", 6)
    assert stt.model_path == tmp_path and stt.model_name == ""  # a folder, not a name
    named = build_stt(Config.from_env({"HARK_STT_MODEL": "large-v3-turbo"}))
    assert named.model_name == "large-v3-turbo" and named.model_path is None


async def test_cuda_without_a_gpu_is_refused_at_load() -> None:
    with pytest.raises(EngineUnavailable, match="HARK_STT_DEVICE=cuda"):
        await FasterWhisperSTT(device="cuda").load()


async def test_a_model_name_with_no_hub_says_what_to_set() -> None:
    with pytest.raises(EngineUnavailable, match="set HARK_STT_MODEL to a model folder"):
        await FasterWhisperSTT(model="large-v3-turbo").load()  # HF_HUB_OFFLINE=1 here


async def test_a_model_folder_loads_with_the_cpu_defaults() -> None:
    stt = FasterWhisperSTT(model=str(packaged_model()), device="auto")
    await stt.load()
    assert (stt.device, stt.compute_type, stt.batch) == ("cpu", "int8", 1)
    assert (await stt.transcribe(speak(QUESTIONS[0]))).startswith("What is the capital")


async def test_utterances_of_several_calls_share_a_batch_and_keep_their_words() -> None:
    one_by_one = FasterWhisperSTT()
    batched = FasterWhisperSTT(batch=4)
    await asyncio.gather(one_by_one.load(), batched.load())
    assert batched._queue is not None and one_by_one._queue is None
    long = np.concatenate([speak(QUESTIONS[1]), silence(5000), speak(QUESTIONS[2])])
    clips = [speak(q) for q in QUESTIONS] + [long]  # four short windows, one full pass
    expected = [await one_by_one.transcribe(clip) for clip in clips]
    pending = [asyncio.ensure_future(batched.transcribe(clip)) for clip in clips]
    await asyncio.sleep(0)
    assert batched.queue_depth == len(clips)
    got = await asyncio.gather(*pending)
    assert got == expected
    assert got[0] == "What is the capital of France?"
    assert batched.queue_depth == 0
    # Those that waited while the worker was busy went together.
    sizes = [len(keys) for keys in batched._queue.served]
    assert sum(sizes) == len(clips) and max(sizes) >= 3, sizes


async def test_a_dropped_transcription_never_runs() -> None:
    batched = FasterWhisperSTT(batch=2)
    await batched.load()
    assert batched._queue is not None
    one, two = speak(QUESTIONS[0]), speak(QUESTIONS[1])
    first = asyncio.ensure_future(batched.transcribe(one))
    await asyncio.sleep(0.05)  # the first is running
    dropped = asyncio.ensure_future(batched.transcribe(two))
    await asyncio.sleep(0.01)  # the second waits
    assert batched.queue_depth == 2
    dropped.cancel()  # the user talked past the pause: its preemptive job is dropped
    assert await first == QUESTIONS[0]
    await asyncio.sleep(0.2)
    assert [len(keys) for keys in batched._queue.served] == [1]
