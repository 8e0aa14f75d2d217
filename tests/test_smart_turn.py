"""Smart Turn v3.2 from the pinned pipecat-ai wheel: real speech, the real model.

A whole question ends on a finished contour and scores high; the same question cut off
mid-sentence scores low. Audio is what the segmenter hands over at a pause: the turn so
far, int16, with the 64 ms of silence that made it a pause.
"""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from server.app import load_smart_turn
from server.config import Config, ConfigError
from server.turns import smart_turn_model
from server.turns.options import server_turn_detection
from server.turns.smart_turn import SmartTurn, SmartTurnInputError, features
from server.turns.smart_turn_model import SmartTurnModelError
from tests.speech import silence, speak

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn.installed()


def at_pause(pcm: np.ndarray) -> np.ndarray:
    return np.concatenate([pcm, silence(64)])


def test_complete_question_scores_high(model):
    assert model.probability(at_pause(speak(QUESTION))) > 0.8


def test_question_cut_mid_sentence_scores_low(model):
    whole = speak(QUESTION)
    cut = whole[: int(len(whole) * 0.7)]  # "What is the capital of …"
    probability = model.probability(at_pause(cut))
    assert probability < 0.5
    assert not SmartTurn.complete(probability)


async def test_predict_runs_off_the_loop_with_the_same_answer(model):
    audio = at_pause(speak(QUESTION))
    loop_ticks = 0

    async def tick() -> None:
        nonlocal loop_ticks
        while True:
            loop_ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    try:
        probability = await model.predict(audio)
    finally:
        ticker.cancel()
    assert probability == pytest.approx(model.probability(audio), abs=1e-6)
    assert loop_ticks >= 2  # the loop kept running while the model did


def test_features_shape_padding_and_dtypes():
    pcm = speak("Hello there.")
    as_int = features(pcm)
    as_float = features(pcm.astype(np.float32) / 32768.0)
    assert as_int.shape == (1, 80, 800) and as_int.dtype == np.float32
    np.testing.assert_allclose(as_int, as_float, atol=1e-5)
    # Shorter than 8 s: zeros in front, so the speech sits at the end of the window.
    energy = as_int[0].mean(axis=0)
    assert energy[-50:].mean() > energy[:50].mean() + 0.2
    # Longer than 8 s: only the last 8 s count.
    long = np.concatenate([speak("One two three four five six seven eight."), silence(9000), pcm])
    np.testing.assert_allclose(features(long), features(long[-16000 * 8 :]), atol=1e-6)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(16000, np.float64), "dtype float64"),
        (np.zeros(16000, np.int32), "dtype int32"),
        (np.zeros((2, 16000), np.float32), "mono"),
        (np.full(16000, np.nan, np.float32), "NaN"),
        ([0.0] * 16000, "numpy array"),
    ],
)
def test_bad_input_is_a_clear_error(model, audio, message):
    with pytest.raises(SmartTurnInputError, match=message):
        model.probability(audio)


async def test_bad_input_fails_before_reaching_the_model_thread(model):
    with pytest.raises(SmartTurnInputError, match="empty"):
        await model.predict(np.zeros(0, np.int16))


def test_missing_or_altered_model_names_the_package(tmp_path, model):
    with pytest.raises(SmartTurnModelError, match=r"pipecat-ai==1\.14\.0"):
        smart_turn_model.model_path(tmp_path)
    fake = smart_turn_model.cached_path(tmp_path)
    fake.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(smart_turn_model.model_path(), fake)
    with fake.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00altered")
    with pytest.raises(SmartTurnModelError, match=r"sha256 .* pipecat-ai==1\.14\.0"):
        smart_turn_model.model_path(tmp_path)


def test_fetch_is_cached(tmp_path, monkeypatch):
    """A cached, checked file is returned without running pip at all."""
    fake = smart_turn_model.cached_path(tmp_path)
    fake.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(smart_turn_model.model_path(), fake)

    def no_download(into):
        raise AssertionError("downloaded although the file was cached")

    monkeypatch.setattr(smart_turn_model, "_download_wheel", no_download)
    assert smart_turn_model.fetch(tmp_path, quiet=True) == fake


def test_setting_is_parsed():
    assert Config.from_env({}).end_of_turn == "semantic"
    config = Config.from_env({"HARK_END_OF_TURN": "Smart_Turn"})
    assert config.end_of_turn == "smart_turn"
    assert server_turn_detection(config).end_of_turn == "smart_turn"
    assert server_turn_detection(Config.from_env({})).end_of_turn == "semantic"
    with pytest.raises(ConfigError, match="HARK_END_OF_TURN"):
        Config.from_env({"HARK_END_OF_TURN": "magic"})


async def test_the_server_loads_it_only_when_asked(monkeypatch, tmp_path):
    assert await load_smart_turn(Config.from_env({})) is None
    asked = Config.from_env({"HARK_END_OF_TURN": "smart_turn"})
    loaded = await load_smart_turn(asked)
    assert isinstance(loaded, SmartTurn)
    assert SmartTurn.complete(loaded.probability(at_pause(speak(QUESTION))))
    monkeypatch.setattr(smart_turn_model, "INSTALL_DIR", tmp_path)  # never fetched here
    with pytest.raises(SmartTurnModelError, match=r"missing.*pipecat-ai==1\.14\.0"):
        await load_smart_turn(asked)
