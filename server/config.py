"""Hark's configuration, read once from `HARK_*` environment variables.

Every knob has a default that runs on a CPU laptop with the packaged models; the README
lists them all. Reading is strict: a malformed number fails at start-up with the
variable's name, never later in a call.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from server.interruption import InterruptionOptions
from server.session_config import TurnDetectionConfig

if TYPE_CHECKING:
    from signaling.signing_keys import KeyRing


class ConfigError(ValueError):
    """A `HARK_*` variable holds a value Hark cannot use."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc


def _list(env: dict[str, str], name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _bool(env: dict[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def _jwt_keys(env: dict[str, str]) -> list[tuple[str, str]]:
    from signaling.signing_keys import KeyRingError, parse_keys

    try:
        return list(parse_keys(env.get("HARK_JWT_KEYS", "")).items())
    except KeyRingError as exc:
        raise ConfigError(f"HARK_JWT_KEYS: {exc}") from exc


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()
    # True when no key was configured and Hark generated one for this run.
    api_key_generated: bool = False
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    client_secret_ttl_s: int = 60
    client_secret_max_ttl_s: int = 7200
    cors_origins: tuple[str, ...] = ()
    demo: bool = True
    max_body_bytes: int = 64 * 1024
    max_event_bytes: int = 128 * 1024
    cache_dir: Path = Path.home() / ".cache" / "hark"
    stt: str = "faster-whisper"
    stt_beam_size: int = 5
    llm: str = "llama-cpp"
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_max_tokens: int = 60
    llm_threads: int = 2
    tts: str = "piper"
    espeak_voice: str = "en-us"
    default_instructions: str = (
        "You are Hark, a friendly voice assistant. Answer in one or two short sentences."
    )
    ice_timeout_s: float = 30.0
    # Signing keys beyond HARK_JWT_SECRET: `kid:secret` pairs, the active kid, a keys file.
    jwt_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    jwt_active_kid: str = ""
    jwt_keys_file: str = ""
    # True when the signing key was set by the operator (tokens survive restarts).
    jwt_configured: bool = False
    jwt_secret_set: bool = False
    jwt_leeway_s: float = 5.0
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_key_generated: bool = False
    redis_url: str = field(default="", repr=False)
    node_id: str = ""
    registry_ttl_s: float = 15.0
    max_calls: int = 16
    max_calls_per_key: int = 0
    max_calls_per_sub: int = 2
    max_call_duration_s: float = 3600.0
    idle_timeout_s: float = 60.0
    rate_mint_per_key: int = 600
    rate_calls_per_key: int = 300
    rate_per_address: int = 600
    log_format: str = "auto"
    log_transcripts: bool = False
    quality_interval_s: float = 2.0
    # Cancel and gate the bot's own voice in the caller's audio, for deployments whose
    # clients have no echo cancellation (glasses). Off by default: until it has measured
    # the echo path it treats speech at the bot's own level as possible echo, which makes
    # barge-in on a call's first reply harder for clients that do cancel echo (browsers).
    echo_guard: bool = False
    # Default turn detection of new sessions (clients may change it with session.update).
    turn_detection: str = "semantic_vad"
    min_interruption_ms: int = 500
    false_interruption_timeout_ms: int = 2000

    def default_turn_detection(self) -> TurnDetectionConfig:
        return TurnDetectionConfig(
            type="semantic_vad" if self.turn_detection == "semantic_vad" else "server_vad",
            interruption=InterruptionOptions(
                min_duration_ms=self.min_interruption_ms,
                false_interruption_timeout_ms=self.false_interruption_timeout_ms,
            ),
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        keys = tuple(_list(env, "HARK_API_KEYS"))
        generated = False
        if not keys:
            keys = ("sk-hark-" + secrets.token_urlsafe(24),)
            generated = True
        host = env.get("HARK_HOST", "127.0.0.1")
        port = _int(env, "HARK_PORT", 8080)
        admin_keys = tuple(_list(env, "HARK_ADMIN_KEYS"))
        admin_generated = False
        if not admin_keys:
            admin_keys = ("sk-hark-admin-" + secrets.token_urlsafe(24),)
            admin_generated = True
        demo_flag = _bool(env, "HARK_DEMO")
        # The demo page mints secrets for any visitor: only safe when nobody else can reach it.
        demo = is_loopback(host) if demo_flag is None else demo_flag
        llm_base_url = env.get("HARK_LLM_BASE_URL", "").rstrip("/")
        llm_default = "openai" if llm_base_url else "llama-cpp"
        ttl = _int(env, "HARK_CLIENT_SECRET_TTL", 60, minimum=10)
        max_ttl = _int(env, "HARK_CLIENT_SECRET_MAX_TTL", 7200, minimum=10)
        if ttl > max_ttl:
            raise ConfigError(f"HARK_CLIENT_SECRET_TTL={ttl} exceeds HARK_CLIENT_SECRET_MAX_TTL")
        return cls(
            host=host,
            port=port,
            api_keys=keys,
            api_key_generated=generated,
            jwt_secret=env.get("HARK_JWT_SECRET") or secrets.token_urlsafe(32),
            client_secret_ttl_s=ttl,
            client_secret_max_ttl_s=max_ttl,
            cors_origins=tuple(_list(env, "HARK_CORS_ORIGINS")),
            demo=demo,
            max_body_bytes=_int(env, "HARK_MAX_BODY_BYTES", 64 * 1024, minimum=1024),
            max_event_bytes=_int(env, "HARK_MAX_EVENT_BYTES", 128 * 1024, minimum=1024),
            cache_dir=Path(env.get("HARK_CACHE_DIR") or Path.home() / ".cache" / "hark"),
            stt=_choice(env, "HARK_STT", "faster-whisper", ("faster-whisper",)),
            stt_beam_size=_int(env, "HARK_STT_BEAM_SIZE", 5, minimum=1),
            llm=_choice(env, "HARK_LLM", llm_default, ("llama-cpp", "openai")),
            llm_base_url=llm_base_url,
            llm_model=env.get("HARK_LLM_MODEL", ""),
            llm_api_key=env.get("HARK_LLM_API_KEY", ""),
            llm_max_tokens=_int(env, "HARK_LLM_MAX_TOKENS", 60, minimum=1),
            llm_threads=_int(env, "HARK_LLM_THREADS", min(4, os.cpu_count() or 2), minimum=1),
            tts=_choice(env, "HARK_TTS", "piper", ("piper", "espeak")),
            espeak_voice=env.get("HARK_ESPEAK_VOICE", "en-us"),
            default_instructions=env.get("HARK_INSTRUCTIONS") or cls.default_instructions,
            ice_timeout_s=_float(env, "HARK_ICE_TIMEOUT", 30.0),
            jwt_keys=tuple(_jwt_keys(env)),
            jwt_active_kid=env.get("HARK_JWT_ACTIVE_KID", "").strip(),
            jwt_keys_file=env.get("HARK_JWT_KEYS_FILE", "").strip(),
            jwt_configured=any(
                env.get(name) for name in ("HARK_JWT_SECRET", "HARK_JWT_KEYS", "HARK_JWT_KEYS_FILE")
            ),
            jwt_secret_set=bool(env.get("HARK_JWT_SECRET")),
            jwt_leeway_s=_float(env, "HARK_JWT_LEEWAY", 5.0),
            admin_keys=admin_keys,
            admin_key_generated=admin_generated,
            redis_url=env.get("HARK_REDIS_URL", "").strip(),
            node_id=env.get("HARK_NODE_ID", "").strip() or f"{socket.gethostname()}:{port}",
            registry_ttl_s=_float(env, "HARK_REGISTRY_TTL", 15.0),
            max_calls=_int(env, "HARK_MAX_CALLS", 16),
            max_calls_per_key=_int(env, "HARK_MAX_CALLS_PER_KEY", 0),
            max_calls_per_sub=_int(env, "HARK_MAX_CALLS_PER_SUB", 2),
            max_call_duration_s=_float(env, "HARK_MAX_CALL_DURATION", 3600.0),
            idle_timeout_s=_float(env, "HARK_IDLE_TIMEOUT", 60.0),
            rate_mint_per_key=_int(env, "HARK_RATE_MINT_PER_MIN", 600),
            rate_calls_per_key=_int(env, "HARK_RATE_CALLS_PER_MIN", 300),
            rate_per_address=_int(env, "HARK_RATE_PER_ADDRESS_PER_MIN", 600),
            log_format=_choice(env, "HARK_LOG_FORMAT", "auto", ("auto", "json", "text")),
            log_transcripts=bool(_bool(env, "HARK_LOG_TRANSCRIPTS")),
            echo_guard=_bool(env, "HARK_ECHO_GUARD") is True,
            turn_detection=_choice(
                env, "HARK_TURN_DETECTION", "semantic_vad", ("semantic_vad", "server_vad")
            ),
            min_interruption_ms=_int(env, "HARK_MIN_INTERRUPTION_MS", 1000),
            false_interruption_timeout_ms=_int(env, "HARK_FALSE_INTERRUPTION_TIMEOUT_MS", 2000),
            quality_interval_s=min(60.0, max(0.25, _float(env, "HARK_QUALITY_INTERVAL", 2.0))),
        )

    def validate(self) -> None:
        from signaling.signing_keys import KeyRingError

        try:
            self.key_ring()
        except KeyRingError as exc:
            raise ConfigError(f"signing keys: {exc}") from exc
        if self.llm == "openai" and not self.llm_base_url:
            raise ConfigError("HARK_LLM=openai needs HARK_LLM_BASE_URL (e.g. http://vllm:8000/v1)")

    def key_ring(self) -> KeyRing:
        """The signing keys: a keys file, else HARK_JWT_KEYS (+ HARK_JWT_SECRET as `default`)."""
        from signaling.signing_keys import DEFAULT_KID, KeyRing

        if self.jwt_keys_file:
            return KeyRing.from_file(Path(self.jwt_keys_file))
        if self.jwt_keys:
            keys = dict(self.jwt_keys)
            if self.jwt_secret_set:
                keys.setdefault(DEFAULT_KID, self.jwt_secret)
            return KeyRing(keys, self.jwt_active_kid or self.jwt_keys[0][0])
        return KeyRing.single(self.jwt_secret)
