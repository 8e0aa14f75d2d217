"""The node's cores split between its workers step by step (server/engines/core_share.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from server.engines import core_share
from server.engines.core_share import RECENT_S, CoreShare, threads_for


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("wanted", "cores", "busy", "expected"),
    [
        (2, 2, 1, 2),  # alone on the node: every configured thread
        (4, 2, 1, 4),  # alone: the configured count, even past the cores
        (2, 2, 2, 1),  # two workers on two cores: one each
        (2, 2, 3, 1),  # never fewer than one
        (4, 8, 2, 4),  # a share larger than asked for: what was asked for
        (4, 8, 4, 2),
        (1, 2, 1, 1),
    ],
)
def test_threads_for(wanted: int, cores: int, busy: int, expected: int) -> None:
    assert threads_for(wanted, cores, busy) == expected


def pair(tmp_path: Path, clock: FakeClock) -> tuple[CoreShare, CoreShare]:
    path = tmp_path / "cores"
    core_share.create(path, 2)
    return CoreShare(path, 0, cores=2, clock=clock), CoreShare(path, 1, cores=2, clock=clock)


def test_a_worker_alone_takes_every_thread(tmp_path: Path) -> None:
    clock = FakeClock()
    first, _ = pair(tmp_path, clock)
    assert first.threads(2) == 2


def test_a_worker_takes_its_share_while_another_computes(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = pair(tmp_path, clock)
    with second.computing():
        clock.now += 5.0  # a long step is still a step
        assert first.threads(2) == 1
    # Between two of its token steps the other worker still counts as busy…
    clock.now += RECENT_S / 2
    assert first.threads(2) == 1
    # …and once it has been idle for longer, the cores are this worker's again.
    clock.now += RECENT_S
    assert first.threads(2) == 2


def test_nested_and_concurrent_work_keeps_a_worker_busy(tmp_path: Path) -> None:
    """Whisper and llama.cpp compute on threads of their own in one worker: it is idle
    only when both are done."""
    clock = FakeClock()
    first, second = pair(tmp_path, clock)
    stt_done = threading.Event()
    llm_inside = threading.Event()

    def llm() -> None:
        with second.computing():
            llm_inside.set()
            stt_done.wait(5)
            clock.now += 1.0
            assert first.threads(2) == 1  # the STT finished, the LLM step has not

    with second.computing():
        thread = threading.Thread(target=llm)
        thread.start()
        llm_inside.wait(5)
    stt_done.set()
    thread.join(5)
    clock.now += 2 * RECENT_S
    assert first.threads(2) == 2


def test_a_restarted_worker_is_not_left_busy(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = pair(tmp_path, clock)
    second._stamp(float("inf"))  # died inside a step
    assert first.threads(2) == 1
    CoreShare(tmp_path / "cores", 1, cores=2, clock=clock)  # started again
    assert first.threads(2) == 2


def test_a_single_process_has_no_file() -> None:
    alone = CoreShare(None, cores=2)
    assert not alone.shared
    with alone.computing():
        assert alone.threads(3) == 3
    assert alone.busy_others() == 0


def test_a_worker_outside_the_file_is_refused(tmp_path: Path) -> None:
    core_share.create(tmp_path / "cores", 2)
    with pytest.raises(ValueError):
        CoreShare(tmp_path / "cores", 2)


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core_share.create(tmp_path / "cores", 3)
    monkeypatch.setenv(core_share.ENV, str(tmp_path / "cores"))
    monkeypatch.setenv(core_share.INDEX_ENV, "2")
    share = CoreShare.from_env()
    assert share.shared
    assert share.index == 2
    monkeypatch.delenv(core_share.ENV)
    assert not CoreShare.from_env().shared


def test_a_step_beside_its_own_workers_whisper_takes_a_share(tmp_path: Path) -> None:
    clock = FakeClock()
    first, _ = pair(tmp_path, clock)
    with first.computing():  # its Whisper decoding on the STT thread
        assert first.threads(2) == 1  # its llama.cpp step beside it
    assert first.threads(2) == 2


def test_the_llms_steps_take_their_threads_from_the_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's llama.cpp step: one thread per token, the prompt on every configured
    thread while it computes alone, on its share while another worker computes."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from server.engines.llama_cpp_llm import LlamaCppLLM

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        llama_cpp, "llama_set_n_threads", lambda ctx, n, batch: calls.append((n, batch))
    )
    clock = FakeClock()
    first, second = pair(tmp_path, clock)
    llm = LlamaCppLLM(tmp_path, threads=2, token_threads=1, cores=first)

    class FakeLlama:  # only its context handle is read
        ctx = object()

    with llm._step(FakeLlama()):  # type: ignore[arg-type]
        assert second.busy_others() == 1  # this worker is stamped busy meanwhile
    with second.computing(), llm._step(FakeLlama()):  # type: ignore[arg-type]
        pass
    assert calls == [(1, 2), (1, 1)]
