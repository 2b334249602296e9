"""Structured logs: the one place structlog is configured.

One event per decision, snake_case names, ids as fields. JSON lines when stdout
is not a terminal (journald, files), readable lines when it is.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from mailsvc.scrub import scrub
from mailsvc.trust import redact_tokens

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|credential", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _names_secret(key: str) -> bool:
    # Every field of every event is asked; the keys are a few dozen names, searched once each.
    return _SECRET_KEYS.search(key) is not None


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """No password or token reaches a log line, whatever a caller passes."""
    for key, value in event.items():
        if _names_secret(key):
            event[key] = "[redacted]"
        elif isinstance(value, str) and "+c" in value:
            event[key] = redact_tokens(value)
    return event


def scrub_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """No character of a configured secret in any field, tracebacks included (run after they are rendered)."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
        elif isinstance(value, list | tuple):
            event[key] = [scrub(v) if isinstance(v, str) else v for v in value]
    return event


def configure(format: str = "auto", level: str = "info") -> None:
    use_json = format == "json" or (format == "auto" and not sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write per event (print() makes two): processes sharing a stream never split each other's lines.
        logger_factory=structlog.WriteLoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(**fields: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger that binds lazily, so module-level loggers follow `configure` called later."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**fields)
    return logger
