"""Logs as one JSON object per line (`HARK_LOG_FORMAT=json`), or as readable text.

`log_event(logger, "call.created", call_id=…)` attaches fields to a record; the JSON
formatter writes them as keys next to `ts`, `level`, `logger` and `msg`, the text
formatter appends them as `key=value`. Plain `log.info("…")` lines work in both formats,
so the whole server's output is machine-readable in JSON mode. Nothing here ever logs
audio, credentials or (unless `HARK_LOG_TRANSCRIPTS=1`) what anyone said.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIELDS_ATTR = "hark_fields"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={FIELDS_ATTR: {"event": event, **fields}})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, FIELDS_ATTR, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII only: a path with U+2028 or U+0085 in it must not split a line for a reader
        # that splits on every Unicode line break.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in getattr(record, FIELDS_ATTR, {}).items() if k != "event"}
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def setup_logging(log_format: str, verbose: bool) -> None:
    """`auto` is text on a terminal and JSON otherwise (services, containers, tests)."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("aioice", "aiortc", "aiohttp.access", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
