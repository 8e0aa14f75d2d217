"""Hark's configuration, read once from `HARK_*` environment variables.

Every knob has a default that runs on a CPU laptop with the packaged models; the README
lists them all. Each setting is declared once, below, with its variable, its default and
its parser, so a default cannot drift between the code and the environment reader.
Reading is strict: a malformed value fails at start-up with the variable's name, never
later in a call.

A leaf module: it imports nothing of the project. Settings whose defaults belong to a
concept (the turn-taking options) are `None` here, meaning "that concept's default".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Parser = Callable[[str, str], Any]


class ConfigError(ValueError):
    """A `HARK_*` variable holds a value Hark cannot use."""


# ---- parsers: (variable name, raw text) -> value ----------------------------------------


def integer(minimum: int = 0) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not an integer") from exc
        if value < minimum:
            raise ConfigError(f"{name}={value} is below the minimum {minimum}")
        return value

    return parse


def number(lo: float | None = None, hi: float | None = None) -> Parser:
    """A float; with bounds, values outside are clamped (a sampling interval, say)."""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a number") from exc
        if lo is not None:
            value = max(lo, value)
        if hi is not None:
            value = min(hi, value)
        return value

    return parse


def boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def echo_mode(name: str, raw: str) -> str:
    """auto/on/off, with the boolean spellings of on and off still accepted."""
    value = raw.strip().lower()
    if value == "auto":
        return value
    try:
        return "on" if boolean(name, value) else "off"
    except ConfigError:
        raise ConfigError(f"{name}={value!r}: choose auto, on or off (or 1/0)") from None


def choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r}: choose one of {', '.join(choices)}")
        return value

    return parse


def text(name: str, raw: str) -> str:
    return raw.strip()


def path(name: str, raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def words(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def setting(env: str, default: Any, parse: Parser = text, *, secret: bool = False) -> Any:
    """A field read from `env` (an empty variable counts as unset)."""
    return field(default=default, repr=not secret, metadata={"env": env, "parse": parse})


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a cgroup's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


DEFAULT_CACHE_DIR = Path.home() / ".cache" / "hark"
# The personas shipped with Hark (a general assistant and the tutor Ava).
DEFAULT_PERSONAS_DIR = Path(__file__).resolve().parent.parent / "personas"


@dataclass(frozen=True)
class Config:
    host: str = setting("HARK_HOST", "127.0.0.1")
    port: int = setting("HARK_PORT", 8080, integer())
    # Empty: Hark generates one for the run and prints it (api_key_generated).
    api_keys: tuple[str, ...] = setting("HARK_API_KEYS", (), words, secret=True)
    api_key_generated: bool = False
    # Empty: a random key for this run (jwt_secret_generated); tokens die with the process.
    jwt_secret: str = setting("HARK_JWT_SECRET", "", secret=True)
    jwt_secret_generated: bool = False
    client_secret_ttl_s: int = setting("HARK_CLIENT_SECRET_TTL", 60, integer(10))
    client_secret_max_ttl_s: int = setting("HARK_CLIENT_SECRET_MAX_TTL", 7200, integer(10))
    cors_origins: tuple[str, ...] = setting("HARK_CORS_ORIGINS", (), words)
    # None: on exactly when the host is loopback (the demo page mints secrets for anyone).
    demo: bool | None = setting("HARK_DEMO", None, boolean)
    max_body_bytes: int = setting("HARK_MAX_BODY_BYTES", 64 * 1024, integer(1024))
    # An event's cap: 1 MiB holds one append of ~15 s of 24 kHz PCM16 audio in base64.
    max_event_bytes: int = setting("HARK_MAX_EVENT_BYTES", 1024 * 1024, integer(1024))
    # Seconds of audio a WebSocket client may append ahead of real time (then: `error`).
    append_burst_s: float = setting("HARK_APPEND_BURST_S", 20.0, number(1.0))
    cache_dir: Path = setting("HARK_CACHE_DIR", DEFAULT_CACHE_DIR, Path)
    stt: str = setting("HARK_STT", "faster-whisper", choice("faster-whisper"))
    stt_beam_size: int = setting("HARK_STT_BEAM_SIZE", 5, integer(1))
    # A short utterance decoded greedily, with the beam only where the words are unsure:
    # ~25 ms sooner, but over WebRTC it misheard 10 of 49 recorded turns that beam 5 got
    # right ("the capital of friends?"), each with sure-looking words. Off by default.
    stt_greedy_first: bool = setting("HARK_STT_GREEDY_FIRST", False, boolean)
    # Unset with a base URL set: the OpenAI-compatible server.
    llm: str = setting("HARK_LLM", "llama-cpp", choice("llama-cpp", "openai"))
    llm_base_url: str = setting("HARK_LLM_BASE_URL", "", lambda _, raw: raw.strip().rstrip("/"))
    llm_model: str = setting("HARK_LLM_MODEL", "")
    llm_api_key: str = setting("HARK_LLM_API_KEY", "", secret=True)
    llm_max_tokens: int = setting("HARK_LLM_MAX_TOKENS", 60, integer(1))
    llm_threads: int = setting("HARK_LLM_THREADS", min(4, os.cpu_count() or 2), integer(1))
    # Threads per generated token (a prompt's evaluation takes HARK_LLM_THREADS): with
    # OpenMP threads that sleep at barriers (OMP_WAIT_POLICY=PASSIVE), one thread makes a
    # small model's token as soon as two, and leaves the other cores to the other calls.
    llm_token_threads: int = setting("HARK_LLM_TOKEN_THREADS", 1, integer(1))
    llm_slots: int = setting("HARK_LLM_SLOTS", 3, integer(1))
    # Whisper's CPU threads (CTranslate2's intra-op threads; per worker).
    stt_threads: int = setting("HARK_STT_THREADS", 2, integer(1))
    # The node's workers split the cores step by step (server/engines/core_share.py): a
    # worker's llama.cpp step takes HARK_LLM_THREADS while no other worker computes, and
    # its share of the cores while others do.
    share_cores: bool = setting("HARK_SHARE_CORES", True, boolean)
    # A reply's first chunk may go to the TTS after this many words (0: only at a clause
    # or a phrase): the first audio waits for fewer tokens of a CPU LLM.
    first_chunk_words: int = setting("HARK_FIRST_CHUNK_WORDS", 2, integer())
    tts: str = setting("HARK_TTS", "piper", choice("piper", "espeak", "f5"))
    espeak_voice: str = setting("HARK_ESPEAK_VOICE", "en-us")
    default_instructions: str = setting(
        "HARK_INSTRUCTIONS",
        "You are Hark, a friendly voice assistant. Answer in one or two short sentences.",
    )
    ice_timeout_s: float = setting("HARK_ICE_TIMEOUT", 30.0, number())
    # Signing keys beyond HARK_JWT_SECRET: `kid:secret` pairs, the active kid, a keys file
    # (parsed and checked by signaling.signing_keys at start-up).
    jwt_keys: str = setting("HARK_JWT_KEYS", "", secret=True)
    jwt_active_kid: str = setting("HARK_JWT_ACTIVE_KID", "")
    jwt_keys_file: str = setting("HARK_JWT_KEYS_FILE", "")
    jwt_leeway_s: float = setting("HARK_JWT_LEEWAY", 5.0, number())
    admin_keys: tuple[str, ...] = setting("HARK_ADMIN_KEYS", (), words, secret=True)
    admin_key_generated: bool = False
    redis_url: str = setting("HARK_REDIS_URL", "", secret=True)
    # Empty: hostname:port.
    node_id: str = setting("HARK_NODE_ID", "")
    # Worker processes of this node (server/workers): 1 runs one process, as always; more
    # puts an HTTP front on HARK_PORT that routes calls to workers on private ports.
    workers: int = setting("HARK_WORKERS", usable_cores(), integer(1))
    registry_ttl_s: float = setting("HARK_REGISTRY_TTL", 15.0, number())
    # Where the other nodes reach this one (forwarded call requests). Empty: from host/port.
    node_url: str = setting("HARK_NODE_URL", "")
    # SIGTERM: seconds the live calls may go on before they are told and closed.
    drain_timeout_s: float = setting("HARK_DRAIN_TIMEOUT_S", 30.0, number(0.0))
    max_calls: int = setting("HARK_MAX_CALLS", 16, integer())
    max_calls_per_key: int = setting("HARK_MAX_CALLS_PER_KEY", 0, integer())
    max_calls_per_sub: int = setting("HARK_MAX_CALLS_PER_SUB", 2, integer())
    max_call_duration_s: float = setting("HARK_MAX_CALL_DURATION", 3600.0, number())
    idle_timeout_s: float = setting("HARK_IDLE_TIMEOUT", 60.0, number())
    rate_mint_per_key: int = setting("HARK_RATE_MINT_PER_MIN", 600, integer())
    rate_calls_per_key: int = setting("HARK_RATE_CALLS_PER_MIN", 300, integer())
    rate_per_address: int = setting("HARK_RATE_PER_ADDRESS_PER_MIN", 600, integer())
    log_format: str = setting("HARK_LOG_FORMAT", "auto", choice("auto", "json", "text"))
    log_transcripts: bool = setting("HARK_LOG_TRANSCRIPTS", False, boolean)
    quality_interval_s: float = setting("HARK_QUALITY_INTERVAL", 2.0, number(0.25, 60.0))
    # The bot's own voice in the caller's audio (clients without echo cancellation, such
    # as glasses): "auto" (the default) detects per call whether the client sends it back
    # and gates it only then; "on" always gates it (a first reply's barge-in then needs a
    # voice louder than the bot's for clients that cancel echo); "off" never looks
    # (README, "Echo without client echo cancellation"). 1/0, true/false mean on/off.
    echo_guard: str = setting("HARK_ECHO_GUARD", "auto", echo_mode)
    # Default turn detection of new sessions (clients may change it with session.update).
    turn_detection: str = setting(
        "HARK_TURN_DETECTION", "semantic_vad", choice("semantic_vad", "server_vad")
    )
    # What judges a pause under semantic_vad: the words so far (a rule set on Whisper's
    # transcript) or Smart Turn v3.2, an audio model from pipecat-ai's wheel.
    end_of_turn: str = setting("HARK_END_OF_TURN", "semantic", choice("semantic", "smart_turn"))
    # None: the turn-taking default (server.turns.options.InterruptionOptions).
    min_interruption_ms: int | None = setting("HARK_MIN_INTERRUPTION_MS", None, integer())
    false_interruption_timeout_ms: int | None = setting(
        "HARK_FALSE_INTERRUPTION_TIMEOUT_MS", None, integer()
    )
    # ---- the GPU path (the `gpu` extra): F5-TTS, Whisper on CUDA, the memory guard ----
    # F5-TTS weights: local files, else the hub's official names where one is reachable.
    f5_checkpoint: Path | None = setting("HARK_F5_CHECKPOINT", None, path)
    vocos_path: Path | None = setting("HARK_VOCOS_PATH", None, path)
    f5_vocab: Path | None = setting("HARK_F5_VOCAB", None, path)
    f5_model_config: Path | None = setting("HARK_F5_MODEL_CONFIG", None, path)
    # The default voice: a clip and its words; unset, Piper's packaged voice says a line.
    f5_ref_audio: Path | None = setting("HARK_F5_REF_AUDIO", None, path)
    f5_ref_text: str = setting("HARK_F5_REF_TEXT", "")
    f5_nfe_steps: int = setting("HARK_F5_NFE_STEPS", 32, integer(1))
    f5_sway: float = setting("HARK_F5_SWAY", -1.0, number(-1.0, 1.0))
    f5_cfg_strength: float = setting("HARK_F5_CFG_STRENGTH", 2.0, number(0.0, 10.0))
    f5_speed: float = setting("HARK_F5_SPEED", 1.0, number(0.3, 3.0))
    f5_max_chunk_chars: int = setting("HARK_F5_MAX_CHUNK_CHARS", 135, integer(20))
    f5_device: str = setting("HARK_F5_DEVICE", "auto")
    # Chunks of different calls synthesized as one batch; 0: 4 on a GPU, 1 on the CPU.
    f5_max_batch: int = setting("HARK_F5_MAX_BATCH", 0, integer())
    # Whisper: a model name (faster-whisper's, e.g. large-v3-turbo) or a folder; empty:
    # the packaged tiny.en. Compute type empty: int8 on the CPU, float16 on CUDA.
    stt_device: str = setting("HARK_STT_DEVICE", "cpu", choice("cpu", "cuda", "auto"))
    stt_model: str = setting("HARK_STT_MODEL", "")
    stt_compute_type: str = setting("HARK_STT_COMPUTE_TYPE", "")
    # Utterances of several calls transcribed in one batch; 0: 1 on the CPU, 8 on CUDA.
    stt_batch: int = setting("HARK_STT_BATCH", 0, integer())
    # Callers in other languages: Whisper base and Kokoro's voices, loaded by the first
    # call that needs them (lazy), with the other engines (start), or never (off).
    multilingual: str = setting("HARK_MULTILINGUAL", "lazy", choice("lazy", "start", "off"))
    # A reply whose first token is later than this fails over to the spoken apology (0: off).
    llm_first_token_timeout_s: float = setting("HARK_LLM_FIRST_TOKEN_TIMEOUT", 5.0, number(0.0))
    # vLLM's request priority (lower is served first; needs --scheduling-policy priority).
    llm_priority: int | None = setting("HARK_LLM_PRIORITY", None, integer(-(2**31)))
    # New calls are refused (503 server_full) above this share of GPU memory in use, or
    # with more than HARK_MAX_ENGINE_QUEUE jobs waiting on an engine (0: no queue limit).
    gpu_memory_limit: float = setting("HARK_GPU_MEMORY_LIMIT", 0.9, number(0.0, 1.0))
    max_engine_queue: int = setting("HARK_MAX_ENGINE_QUEUE", 32, integer())
    # New calls are also refused while the node's measured load stays over a limit for
    # HARK_ADMISSION_WINDOW seconds (a node with no call always admits one); 0: unchecked.
    admission_load: bool = setting("HARK_ADMISSION_LOAD", True, boolean)
    admission_loop_lag_ms: float = setting("HARK_ADMISSION_LOOP_LAG_MS", 60.0, number(0.0))
    admission_pacing_slip: float = setting("HARK_ADMISSION_PACING_SLIP", 0.05, number(0.0, 1.0))
    admission_cpu: float = setting("HARK_ADMISSION_CPU", 0.9, number(0.0, 1.0))
    admission_loop_busy: float = setting("HARK_ADMISSION_LOOP_BUSY", 0.7, number(0.0, 1.0))
    admission_window_s: float = setting("HARK_ADMISSION_WINDOW", 2.0, number(0.0))

    # Durable memory: conversations, recordings, voices (server/store). SQLite under the
    # data directory unless a PostgreSQL URL is given.
    data_dir: Path = setting("HARK_DATA_DIR", Path("data"), Path)
    database_url: str = setting("HARK_DATABASE_URL", "", secret=True)
    # Keep each call's conversation (transcripts, replies as heard, tool items).
    history: bool = setting("HARK_HISTORY", True, boolean)
    # The LLM sees at most this many tokens (estimated) of earlier turns; 0 = no limit.
    memory_tokens: int = setting("HARK_MEMORY_TOKENS", 2000, integer())
    personas_dir: Path = setting("HARK_PERSONAS_DIR", DEFAULT_PERSONAS_DIR, Path)
    # The persona of calls that name none (empty: the plain HARK_INSTRUCTIONS).
    persona: str = setting("HARK_PERSONA", "")
    # Calls may ask to be recorded only when the server allows it.
    recording: bool = setting("HARK_RECORDING", False, boolean)
    # Live interpretation (/v1/realtime/translations): loads multilingual Whisper and the
    # en<->pt Marian models after the call engines; off saves their memory and start-up.
    translation: bool = setting("HARK_TRANSLATION", True, boolean)
    # Who speaks non-English translations: espeak-ng (robotic, first audio in ~0.1 s) or
    # Kokoro's language voices (natural, but seconds a sentence on a CPU).
    translation_voice: str = setting("HARK_TRANSLATION_VOICE", "espeak", choice("espeak", "kokoro"))
    recording_retention_days: float = setting("HARK_RECORDING_RETENTION_DAYS", 30.0, number(0))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata.get("env")
            raw = env.get(name, "") if name else ""
            if raw.strip():
                values[spec.name] = spec.metadata["parse"](name, raw)
        if "llm" not in values and values.get("llm_base_url"):
            values["llm"] = "openai"
        return cls(**values).resolved()

    def resolved(self) -> Config:
        """Fill in what depends on other settings or is generated per run, and check
        settings against each other."""
        changes: dict[str, Any] = {}
        if not self.api_keys:
            changes["api_keys"] = ("sk-hark-" + secrets.token_urlsafe(24),)
            changes["api_key_generated"] = True
        if not self.admin_keys:
            changes["admin_keys"] = ("sk-hark-admin-" + secrets.token_urlsafe(24),)
            changes["admin_key_generated"] = True
        if not (self.jwt_secret or self.jwt_keys or self.jwt_keys_file):
            changes["jwt_secret"] = secrets.token_urlsafe(32)
            changes["jwt_secret_generated"] = True
        if not self.node_id:
            changes["node_id"] = f"{socket.gethostname()}:{self.port}"
        if not self.node_url:
            host = self.host if self.host not in ("0.0.0.0", "", "::") else socket.gethostname()
            host = f"[{host}]" if ":" in host else host
            changes["node_url"] = f"http://{host}:{self.port}"
        changes["node_url"] = changes.get("node_url", self.node_url).rstrip("/")
        if self.client_secret_ttl_s > self.client_secret_max_ttl_s:
            raise ConfigError(
                f"HARK_CLIENT_SECRET_TTL={self.client_secret_ttl_s} exceeds "
                "HARK_CLIENT_SECRET_MAX_TTL"
            )
        return dataclasses.replace(self, **changes)

    @property
    def jwt_configured(self) -> bool:
        """The signing key was set by the operator, so tokens survive restarts."""
        return not self.jwt_secret_generated and bool(
            self.jwt_secret or self.jwt_keys or self.jwt_keys_file
        )

    @property
    def demo_page(self) -> bool:
        """Serve the demo page's client secrets: HARK_DEMO, else only on a loopback host."""
        return is_loopback(self.host) if self.demo is None else self.demo

    def validate(self) -> None:
        if not self.node_url.startswith(("http://", "https://")):
            raise ConfigError(f"HARK_NODE_URL={self.node_url!r}: give an http(s):// URL")
        if self.llm == "openai" and not self.llm_base_url:
            raise ConfigError("HARK_LLM=openai needs HARK_LLM_BASE_URL (e.g. http://vllm:8000/v1)")
