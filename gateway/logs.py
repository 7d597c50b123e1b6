"""structlog, configured once: console in a terminal, JSON lines elsewhere.

A redaction processor is the last line of defence for personal data: values under
sensitive keys are masked, and anything that looks like a Vietnamese phone number
or ID number inside any logged string is masked too.

The stdlib loggers (aiohttp.server, aiohttp.web, asyncio, tortoise...) go through the
same renderer and the same redaction: the root logger's one handler formats with
structlog's ``ProcessorFormatter``, so a library's message becomes the ``event`` of a
JSON line (scrubbed, unlike the gateway's own event names) and its traceback the
``exception`` field of that line, never raw lines around it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import quote, unquote_plus

import orjson
import structlog
from aiohttp.abc import AbstractAccessLogger

from gateway.phones import mask

_SENSITIVE_KEYS = {"otp", "pin", "id_number", "password", "secret", "code_otp"}
_PHONE_KEYS = {"phone", "msisdn", "phone_number", "sender", "receiver", "to", "from_"}
# +84 / 84 / 0 followed by 9 digits (mobile), or 9/12-digit ID numbers standing alone.
# A %XX escape counts as a boundary: "text=Goi%2084987542228" holds a phone, not "2084...".
_PHONE_RE = re.compile(r"(?:(?<!\d)|(?<=%[0-9A-Fa-f]{2}))(?:\+?84|0)(\d{9})(?!\d)")
_ID_RE = re.compile(r"(?<![\d.\-])(\d{12}|\d{9})(?![\d.\-])")
# One query parameter inside a logged URL or request line, its value still percent-encoded.
_QUERY_PAIR_RE = re.compile(r"((?:^|[?&;\s])[^=&\s?#'\"]{1,64}=)([^&\s#'\"]+)")
# What people put between the digits of a number: "+84 987 542 228", "0987.542.228".
_NUMBER_SEPARATORS_RE = re.compile(r"[\s.\-()/\x00]")
_WHOLE_PHONE_RE = re.compile(r"(?:\+?84|0)(\d{9})")
# Any run of 9+ digits in a caller-chosen identifier, wherever it stands.
_DIGIT_RUN_RE = re.compile(r"\d{9,}")
_NINE_DIGITS_RE = re.compile(r"\d{9}")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _scrub_query_value(match: re.Match[str]) -> str:
    """A percent/plus-encoded query value, judged decoded: ``from=%2B84%20987%20542%20228``,
    or a UCS-2 text Kannel passes as ``%000%009%008...``."""
    raw = match.group(2)
    if "%" not in raw and "+" not in raw:
        return match.group(0)  # plain digits: the phone and ID patterns see them as they are
    decoded = unquote_plus(raw, errors="replace")
    whole = _WHOLE_PHONE_RE.fullmatch(_NUMBER_SEPARATORS_RE.sub("", decoded))
    if whole:
        return match.group(1) + mask("+84" + whole.group(1))
    cleaned = decoded.replace("\x00", "")
    scrubbed = _scrub_plain(cleaned)
    if scrubbed == cleaned:
        return match.group(0)
    return match.group(1) + quote(scrubbed, safe="+*:/,")


def _scrub_plain(text: str) -> str:
    if not _NINE_DIGITS_RE.search(text):
        return text  # the common case, one scan: every phone and ID number holds 9 digits in a row
    text = _PHONE_RE.sub(lambda m: mask("+84" + m.group(1)), text)
    return _ID_RE.sub(lambda m: m.group(1)[:2] + "*" * (len(m.group(1)) - 2), text)


def _scrub_text(text: str) -> str:
    if "=" in text and ("%" in text or "+" in text):
        text = _QUERY_PAIR_RE.sub(_scrub_query_value, text)
    return _scrub_plain(text)


# Fields the gateway itself fills with values that never hold personal data. Not
# "request_id": a caller may choose it (X-Request-Id), so it is scrubbed like any value;
# the gateway's own ids (hex process tag, "-", hex counter) pass the scrub unchanged.
_SAFE_KEYS = {"event", "level", "timestamp", "channel", "screen", "logger"}


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


def safe_request_id(raw: str | None) -> str | None:
    """A caller's ``X-Request-Id`` fit to log, or None (then the gateway makes its own).

    Accepted only as 1 to 64 characters of ``[A-Za-z0-9._:-]``; even then a phone number
    is masked as everywhere else and any other run of 9+ digits (an ID number, wherever it
    stands) keeps only its first two digits.
    """
    if not raw or len(raw) > 64 or not _REQUEST_ID_RE.fullmatch(raw):
        return None
    masked = _PHONE_RE.sub(lambda m: mask("+84" + m.group(1)), raw)
    return _DIGIT_RUN_RE.sub(lambda m: m.group(0)[:2] + "*" * (len(m.group(0)) - 2), masked)


# A library may log anything (a repr of a 1 MiB body): foreign lines are bounded.
_FOREIGN_EVENT_CHARS = 4096
_FOREIGN_EXCEPTION_CHARS = 16384


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} ...[{len(text) - 2 * half} chars cut]... {text[-half:]}"


def _foreign_record(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Only in the stdlib chain: a library's message is free text, unlike our event names."""
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = _scrub_text(_bounded(message, _FOREIGN_EVENT_CHARS))
    exception = event.get("exception")
    if isinstance(exception, str):
        event["exception"] = _bounded(exception, _FOREIGN_EXCEPTION_CHARS)  # redact scrubs it next
    return event


class _StreamHandler(logging.Handler):
    """The root handler: writes through structlog's own writer, so a stdlib line and a
    structlog line share one lock and one write each, and never interleave."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._out = structlog.WriteLogger(stream)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.msg(self.format(record))
        except Exception:  # noqa: BLE001 - see handleError
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        # The stdlib would print a plain-text traceback (and the record's raw args) to stderr.
        try:
            self._out.msg(json.dumps({"event": "logging_error", "level": "error", "logger": record.name}))
        except Exception:  # noqa: BLE001 - nothing left to report it to
            pass


_access_log = structlog.get_logger("aiohttp.access")
_access_enabled = True


# Routes whose answered requests already have their canonical line.
_OWN_LINE_PREFIXES = ("/ussd/",)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log as one structlog line per request (``access_log_class``).

    Method, path, status, size, duration, and the request id bound by the app's middleware.
    Never the query string: providers put phone numbers and message texts there.
    """

    def log(self, request: Any, response: Any, time: float) -> None:
        if response.status < 400 and request.path.startswith(_OWN_LINE_PREFIXES):
            return  # a USSD hop has its own canonical line (ussd_hop): one line per hop
        try:
            _access_log.info(
                "http_request",
                method=request.method[:16],
                path=request.path[:128],
                status=response.status,
                bytes=response.body_length,
                duration_ms=round(time * 1000, 2),
                remote=request.remote,
            )
        except Exception:  # noqa: BLE001 - aiohttp would log this failure as a raw traceback
            _access_log.warning("http_request_unloggable", status=getattr(response, "status", None))

    @property
    def enabled(self) -> bool:
        return _access_enabled


def _fallback(obj: Any) -> Any:
    """What neither encoder knows (a datetime, an enum, a custom type): its repr, as structlog does."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


def _dumps(event: Any, **_: Any) -> str:
    """One JSON line, by orjson (several times cheaper than the stdlib encoder); what orjson
    refuses (ints past 64 bits, non-string keys) goes through the stdlib encoder instead."""
    try:
        return orjson.dumps(event, default=_fallback).decode()
    except TypeError:
        return json.dumps(event, default=_fallback)


_stamp_second = -1
_stamp_prefix = ""


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog's ``TimeStamper(fmt="iso", utc=True)`` ("2026-12-03T15:23:23.113320Z"), with
    the date and time of the current second formatted once per second, not once per line."""
    global _stamp_second, _stamp_prefix
    now = time.time()
    second = int(now)
    if second != _stamp_second:
        _stamp_prefix = _dt.datetime.fromtimestamp(second, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _stamp_second = second
    event["timestamp"] = f"{_stamp_prefix}.{int((now - second) * 1e6):06d}Z"
    return event


# The chain configure() set, run by ``canonical`` without structlog's per-call wrappers.
_chain: list[Any] = []
_write: Any = None
_info_enabled = True


def canonical(event: str, fields: dict[str, Any]) -> None:
    """The one line of a hot path (a USSD hop): the same processors as every line
    (context, level, timestamp, redaction, renderer), run once and written once, without
    a bound logger built per call. ``fields`` becomes the line (the caller's own dict)."""
    if _write is None:  # configure() never ran (a library use, a test): structlog's defaults
        structlog.get_logger().info(event, **fields)
        return
    if not _info_enabled:
        return
    fields["event"] = event
    try:
        for processor in _chain:
            fields = processor(None, "info", fields)
    except structlog.DropEvent:  # a processor dropped it (structlog.testing.capture_logs does)
        return
    _write(fields)


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (tests do)."""
    global _access_enabled, _chain, _write, _info_enabled
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True) if use_console else structlog.processors.JSONRenderer(_dumps)
    )
    numeric_level = getattr(logging, level.upper())
    _access_enabled = numeric_level <= logging.INFO
    # Tracebacks become the "exception" string, which redact scrubs, in the console too
    # (the console's own pretty tracebacks would print locals and messages unredacted).
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    _chain, _info_enabled = processors, numeric_level <= logging.INFO
    _write = structlog.WriteLogger(stream).msg
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, asyncio, tortoise) log through stdlib: the same renderer and
    # redaction, on the same stream. Their errors ("Error handling request", "Task exception
    # was never retrieved") are at ERROR, so warnings and up keep them and drop the noise.
    handler = _StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.StackInfoRenderer(),
                structlog.processors.format_exc_info,
                _foreign_record,
                redact,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logging.basicConfig(handlers=[handler], level=max(numeric_level, logging.WARNING), force=True)
    logging.captureWarnings(True)  # warnings.warn(...) would print plain text to stderr


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
