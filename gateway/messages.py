"""Internal message types where provider adapters and the gateway core meet.

Adapters in ``gateway.providers`` turn a provider's wire format into these and back;
nothing past them knows which provider a hop came through beyond the opaque channel key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, slots=True)
class UssdRequest:
    channel: str  # which adapter, e.g. "at"; part of the session key
    session_id: str  # the provider's session id
    msisdn: str  # E.164
    service_code: str  # as dialled, e.g. "*384#" or the shortcut "*384*1*2205130001#"
    # Exactly one of these two styles is used by an adapter:
    cumulative: str | None = None  # every input so far joined by "*" ("" on dial)
    latest: str | None = None  # only the newest input
    new: bool | None = None  # the provider says this hop opens the session
    hop_id: str | None = None  # a provider's id for this hop, to recognise retries


@dataclass(frozen=True, slots=True)
class UssdReply:
    text: str
    end: bool


class BadRequest(ValueError):
    """A request that does not follow the adapter's contract; answered with a 4xx."""


def split_service_code(dialled: str, known: Iterable[str] = ()) -> tuple[str, tuple[str, ...]]:
    """The service code and the inputs a dial string carries after it.

    ``*384*1*2205130001#`` -> (``*384#``, (``1``, ``2205130001``)). Codes in ``known`` win,
    longest first, so a service on a shared number (``*384*55#``) keeps its sub-code.
    """
    body = dialled.strip().strip("*#")
    if not body:
        return dialled.strip(), ()
    segments = body.split("*")
    for code in sorted(known, key=len, reverse=True):
        code_segments = code.strip("*#").split("*")
        if segments[: len(code_segments)] == code_segments:
            return code, tuple(part for part in segments[len(code_segments) :] if part)
    return f"*{segments[0]}#", tuple(part for part in segments[1:] if part)
