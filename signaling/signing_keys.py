"""The keys that sign and verify tokens, by `kid`, so they can rotate without a restart.

One key is active and signs; the others still verify tokens minted before a rotation
until they are retired. Keys come from `HARK_JWT_SECRET` (kid `default`), from
`HARK_JWT_KEYS` (`kid1:secret1,kid2:secret2` with `HARK_JWT_ACTIVE_KID`), or from a JSON
file `HARK_JWT_KEYS_FILE` (`{"active": "k2", "keys": {"k1": "…", "k2": "…"}}`) that is
re-read when it changes, which is how keys rotate on a running server.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from server.config import Config

log = logging.getLogger("hark.keys")

DEFAULT_KID = "default"
MIN_SECRET_CHARS = 32
RELOAD_CHECK_S = 1.0


class KeyRingError(ValueError):
    """Keys that cannot sign safely (empty, too short, active kid unknown)."""


def parse_keys(spec: str) -> dict[str, str]:
    """`kid1:secret1,kid2:secret2` → {kid: secret}."""
    keys: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, secret = part.partition(":")
        if not sep or not kid.strip() or not secret:
            raise KeyRingError(f"key {part[:12]!r}… is not in the form kid:secret")
        keys[kid.strip()] = secret
    return keys


def _check(keys: dict[str, str], active: str) -> None:
    if not keys:
        raise KeyRingError("no signing keys configured")
    if active not in keys:
        raise KeyRingError(f"active kid {active!r} is not among the keys {sorted(keys)}")
    for kid, secret in keys.items():
        if len(secret) < MIN_SECRET_CHARS:
            raise KeyRingError(f"key {kid!r} is shorter than {MIN_SECRET_CHARS} characters")


class KeyRing:
    def __init__(self, keys: dict[str, str], active: str, path: Path | None = None) -> None:
        _check(keys, active)
        self._keys = dict(keys)
        self._active = active
        self._path = path
        self._mtime = path.stat().st_mtime_ns if path is not None else 0
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def single(cls, secret: str) -> KeyRing:
        return cls({DEFAULT_KID: secret}, DEFAULT_KID)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        keys, active = cls._read(path)
        return cls(keys, active, path)

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, str], str]:
        try:
            data = json.loads(path.read_text())
            keys = {str(k): str(v) for k, v in dict(data["keys"]).items()}
            return keys, str(data["active"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"{path}: not a keys file ({exc})") from exc

    @property
    def active_kid(self) -> str:
        self._maybe_reload()
        return self._active

    def kids(self) -> list[str]:
        self._maybe_reload()
        return sorted(self._keys)

    def signing_key(self) -> tuple[str, str]:
        self._maybe_reload()
        return self._active, self._keys[self._active]

    def verifying_key(self, kid: str | None) -> str | None:
        """The key for `kid`; a token without a kid is checked with `default` (or the active)."""
        self._maybe_reload()
        if kid is None:
            return self._keys.get(DEFAULT_KID, self._keys[self._active])
        return self._keys.get(kid)

    def _maybe_reload(self) -> None:
        if self._path is None or time.monotonic() - self._checked < RELOAD_CHECK_S:
            return
        with self._lock:
            self._checked = time.monotonic()
            try:
                mtime = self._path.stat().st_mtime_ns
            except OSError as exc:
                log.warning("keys file %s unreadable (%s); keeping the keys", self._path, exc)
                return
            if mtime == self._mtime:
                return
            try:
                keys, active = self._read(self._path)
                _check(keys, active)
            except KeyRingError as exc:
                log.error("keys file changed but is invalid (%s); keeping the current keys", exc)
                return
            self._keys, self._active, self._mtime = keys, active, mtime
            log.info("signing keys reloaded: active %s, verifying %s", active, sorted(keys))


def key_ring_for(config: Config) -> KeyRing:
    """The server's signing keys: a keys file, else HARK_JWT_KEYS (with HARK_JWT_SECRET kept
    as `default`, so tokens minted before a rotation still verify), else one secret."""
    if config.jwt_keys_file:
        return KeyRing.from_file(Path(config.jwt_keys_file))
    if config.jwt_keys:
        keys = parse_keys(config.jwt_keys)
        if config.jwt_secret and not config.jwt_secret_generated:
            keys.setdefault(DEFAULT_KID, config.jwt_secret)
        return KeyRing(keys, config.jwt_active_kid or next(iter(keys)))
    return KeyRing.single(config.jwt_secret)
