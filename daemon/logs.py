"""JSON logs: one object per line on stdout with `ts`, `level`, `event` and fields.

Secrets (the ProjectX API key, session tokens) are registered with `register_secret` as soon as
they are known; the redaction processor replaces them wherever they appear, and masks any field
whose name says it holds a credential.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import Any

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_SECRET_KEYS = ("api_key", "apikey", "token", "password", "authorization", "secret", "newtoken")
_MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Make the redaction processor hide `value` from every log line from now on."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact_value(value: Any) -> Any:
    """Replace every registered secret inside a value (strings, lists, dicts) with a mask."""
    if isinstance(value, str):
        for s in _secrets:
            if s in value:
                value = value.replace(s, _MASK)
        return value
    if isinstance(value, dict):
        return {k: (_MASK if _is_secret_key(k) else redact_value(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: Any) -> bool:
    # cached: every field of every line is checked, and the field names are few (this check
    # was two thirds of a log line's cost)
    k = str(key).lower().replace("-", "_")
    return any(s in k for s in _SECRET_KEYS)


def redact(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secret-named fields and registered secret values."""
    return {k: (_MASK if _is_secret_key(k) else redact_value(v)) for k, v in event_dict.items()}


def _default(obj: Any) -> Any:
    return str(obj)


def _render(_logger: Any, _name: str, event_dict: dict[str, Any]) -> bytes:
    return orjson.dumps(event_dict, default=_default, option=orjson.OPT_NON_STR_KEYS)


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """Route structlog to `stream` (stdout by default) as JSON lines at `level`.

    Calling it again (on reload) changes the level in place.
    """
    out = stream if stream is not None else sys.stdout.buffer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging; keep them off stdout (stdout is JSON only).
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; `name` becomes the `logger` field."""
    log = structlog.get_logger()
    return log.bind(logger=name) if name else log
