"""Reading a provider's webhook request, whatever a caller sends, into plain strings.

Providers post forms, multipart forms, JSON or bare query strings, in any charset. A
hostile or broken caller sends worse: multipart without a boundary, a charset nobody
knows, JSON nested thousands deep or that is not an object, NUL bytes (PostgreSQL refuses
them in text), lone surrogates, numbers past int64. Everything here either yields clean
values or raises ``Refused``, which the app answers with a 4xx JSON error naming the field;
nothing downstream ever sees a value it cannot store.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Mapping
from urllib.parse import unquote

from aiohttp import web

# More fields than any provider sends: a form with more is not a webhook.
MAX_FIELDS = 64
INT64_MAX = 2**63 - 1


class Refused(Exception):
    """A request refused before it reached the domain: answered ``status`` with a JSON error."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self), "status": self.status}
        if self.field:
            body["field"] = self.field
        return body


def _charset(request: web.Request, default: str = "utf-8") -> str:
    try:
        charset = request.charset
    except ValueError:  # a Content-Type header aiohttp cannot parse
        raise Refused(400, "Content-Type header is malformed", "Content-Type") from None
    if not charset:
        return default
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise Refused(415, f"charset {charset[:40]!r} is not supported", "Content-Type") from None


def clean_text(field: str, value: Any, max_chars: int) -> str:
    """A string that every database can store and every log can encode."""
    if not isinstance(value, str):
        raise Refused(400, f"{field} must be a string", field)
    if len(value) > max_chars:
        raise Refused(400, f"{field} is longer than {max_chars} characters", field)
    if "\x00" in value:
        raise Refused(400, f"{field} contains a NUL character", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(400, f"{field} is not valid text (lone surrogate)", field) from None
    return value


def clean_mapping(values: Mapping[str, Any], max_chars: int) -> dict[str, str]:
    """Every key and value of a flat form checked by ``clean_text``; non-text values dropped."""
    cleaned: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(value, str):
            continue  # multipart file parts: no webhook sends files
        name = clean_text("field name", key, 64)
        cleaned[name] = clean_text(name, value, max_chars)
    return cleaned


def query_params(request: web.Request) -> dict[str, str]:
    if len(request.query) > MAX_FIELDS:
        raise Refused(400, f"more than {MAX_FIELDS} query parameters")
    first: dict[str, str] = {}
    for key, value in request.query.items():
        first.setdefault(key, value)
    return first


def form_pairs(body: str, charset: str) -> list[tuple[str, str]]:
    """``parse_qsl(body, keep_blank_values=True, encoding=charset, errors="strict",
    max_num_fields=MAX_FIELDS)``, the same pairs and the same errors, at a fraction of its
    per-field cost (no argument coercion; a segment without ``+`` or ``%`` is taken as it is)."""
    if not body:
        return []
    if body.count("&") + 1 > MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs: list[tuple[str, str]] = []
    for field in body.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, encoding=charset, errors="strict")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value, encoding=charset, errors="strict")
        pairs.append((name, value))
    return pairs


async def form_params(
    request: web.Request, max_chars: int, query: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Query string (``query`` if the adapter decoded it itself) plus an urlencoded or
    multipart body (the body wins on a clash)."""
    params = dict(query) if query is not None else query_params(request)
    if request.method != "POST":
        return clean_mapping(params, max_chars)
    content_type = request.content_type
    if content_type == "application/x-www-form-urlencoded":
        charset = _charset(request)
        raw = await request.read()
        try:
            pairs = form_pairs(raw.decode(charset), charset)
        except UnicodeDecodeError:
            raise Refused(400, f"form body is not valid {charset}") from None
        except ValueError:
            raise Refused(400, f"more than {MAX_FIELDS} form fields") from None
        body: dict[str, str] = {}
        for key, value in pairs:
            body.setdefault(key, value)
        params.update(body)
    elif content_type == "multipart/form-data":
        _charset(request)
        try:
            form = await request.post()
        except web.HTTPException:
            raise  # too large: aiohttp's own 413
        except Exception:  # noqa: BLE001 - a malformed multipart body, in whatever way
            raise Refused(400, "multipart body is malformed (boundary or part headers)") from None
        if len(form) > MAX_FIELDS:
            raise Refused(400, f"more than {MAX_FIELDS} form fields")
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    elif content_type == "application/json":
        raise Refused(415, "this webhook takes a form or query string, not JSON", "Content-Type")
    return clean_mapping(params, max_chars)


async def json_object(request: web.Request, max_chars: int) -> dict[str, Any]:
    """A JSON body that is an object; its text values checked, nested values left for the adapter."""
    charset = _charset(request)
    raw = await request.read()
    try:
        payload = json.loads(raw.decode(charset))
    except (ValueError, RecursionError):  # bad JSON, bad bytes, numbers past the int limit, too deep
        raise Refused(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Refused(400, "body must be a JSON object")
    if len(payload) > MAX_FIELDS:
        raise Refused(400, f"more than {MAX_FIELDS} fields")
    for key, value in payload.items():
        clean_text("field name", key, 64)
        if isinstance(value, str):
            clean_text(key, value, max_chars)
        elif isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX <= value <= INT64_MAX:
            raise Refused(400, f"{key} is out of range", key)
        elif isinstance(value, (dict, list)):
            raise Refused(400, f"{key} must be a string, number or boolean", key)
    return payload


def offered_token(request: web.Request) -> bytes:
    """The webhook token a caller offers, as bytes (a header may hold any bytes)."""
    offered = request.headers.get("X-Gateway-Token") or request.query.get("token") or ""
    return offered.encode("utf-8", "surrogateescape")


# Column widths the parsed ids must fit (models.entities).
MAX_PROVIDER_ID = 128


def check_ids(parsed: Any) -> None:
    """Ids a parsed SMS webhook carries fit where they are stored: the provider's id its
    column, ours a 64-bit key."""
    provider_id = getattr(parsed, "provider_id", None)
    if provider_id is not None and len(provider_id) > MAX_PROVIDER_ID:
        raise Refused(400, f"id is longer than {MAX_PROVIDER_ID} characters", "id")
    message_id = getattr(parsed, "message_id", None)
    if message_id is not None and not 0 < message_id <= INT64_MAX:
        raise Refused(400, "id is not one of the gateway's message ids", "id")
