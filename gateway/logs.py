"""structlog, configured once: console in a terminal, JSON lines elsewhere.

A redaction processor is the last line of defence for personal data: values under
sensitive keys are masked, and anything that looks like a Vietnamese phone number
or ID number inside any logged string is masked too.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from gateway.phones import mask

_SENSITIVE_KEYS = {"otp", "pin", "id_number", "password", "secret", "code_otp"}
_PHONE_KEYS = {"phone", "msisdn", "phone_number", "sender", "receiver", "to", "from_"}
# +84 / 84 / 0 followed by 9 digits (mobile), or 9/12-digit ID numbers standing alone.
_PHONE_RE = re.compile(r"(?<!\d)(?:\+?84|0)(\d{9})(?!\d)")
_ID_RE = re.compile(r"(?<![\d.\-])(\d{12}|\d{9})(?![\d.\-])")


def _scrub_text(text: str) -> str:
    text = _PHONE_RE.sub(lambda m: mask("+84" + m.group(1)), text)
    return _ID_RE.sub(lambda m: m.group(1)[:2] + "*" * (len(m.group(1)) - 2), text)


# Fields the gateway itself fills with values that never hold personal data.
_SAFE_KEYS = {"event", "level", "timestamp", "request_id", "channel", "screen", "logger"}


def redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if key in _SAFE_KEYS:
            continue
        if key in _SENSITIVE_KEYS:
            event[key] = "***"
        elif key in _PHONE_KEYS and isinstance(value, str):
            event[key] = mask(value) if "*" not in value else value
        elif isinstance(value, str):
            event[key] = _scrub_text(value)
    return event


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (tests do)."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True) if use_console else structlog.processors.JSONRenderer()
    )
    numeric_level = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if not use_console else structlog.processors.StackInfoRenderer(),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, tortoise) log through stdlib; keep them quiet and on the same stream.
    logging.basicConfig(stream=stream, level=max(numeric_level, logging.WARNING), force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
