"""Kannel: send through smsbox's sendsms, receive from an smsbox ``sms-service``, and
delivery reports through ``dlr-url``.

Wire facts (checked against Kannel 1.4.5 from Debian, see tests/peers/README.md):
sendsms answers ``202 0: Accepted for delivery`` with no message id, so our own id rides in
the ``dlr-url``; ``coding=2`` needs ``charset=UTF-8``; the ``dlr-url`` ``%d`` is the report
type (1 delivered, 2 failed, 4 queued, 8 at SMSC, 16 SMSC failure) and ``%A`` the SMSC's
answer. The inbound ``get-url`` we ask operators to configure (README, "SMS"):
``/sms/kannel/inbound?from=%p&to=%P&text=%b&id=%I&coding=%c&charset=%C&token=...``. Replies
go out through sendsms (configure the service with ``max-messages = 0``), so they are in the
outbox like every SMS.

Inbound text as handsets send it (seen with Kannel 1.4.5 and fakesmsc): a text typed with
diacritics arrives at the SMSC as UCS-2. With smsbox's default ``mo-recode = false`` the
get-url carries the raw UTF-16BE bytes URL-encoded (``%00T%00r%00a+%00c%1E%E9...``) with
``coding=2&charset=UTF-16BE``; with ``mo-recode = true`` it carries UTF-8 with
``coding=0&charset=UTF-8``, like GSM text. ``%b`` is the body byte for byte; ``%a`` is the
body split on whitespace *bytes* (0x09-0x0D, 0x20) and joined by one space, which drops a
byte of UTF-16 here and there (a trailing space, or ``₫`` U+20AB after a space). So the
text is decoded from the raw query bytes (``params_from_raw_query``), never from a
UTF-8-decoded query, by the coding and charset Kannel says, and recognised as UTF-16BE
when an older get-url does not say.
"""

from __future__ import annotations

import codecs
from typing import Mapping
from urllib.parse import parse_qsl, quote

import aiohttp

from gateway.messages import BadRequest
from gateway.phones import normalize_msisdn
from gateway.settings import KannelSettings
from gateway.sms import (
    DeliveryReport,
    DeliveryState,
    IncomingSms,
    OutgoingSms,
    SendOutcome,
    SendResult,
    SmsTransport,
)
from models.sms_text import Encoding

NAME = "kannel"

# dlr-url %d: the report type bit.
DLR_TYPES = {
    "1": DeliveryState.DELIVERED,
    "2": DeliveryState.FAILED,
    "4": DeliveryState.QUEUED,
    "8": DeliveryState.SENT,
    "16": DeliveryState.FAILED,
}
_CODING = {Encoding.GSM7: "0", Encoding.UCS2: "2"}


class KannelTransport(SmsTransport):
    name = NAME

    def __init__(self, settings: KannelSettings, public_base_url: str, webhook_token: str = "") -> None:
        self._settings = settings
        self._dlr_base = public_base_url.rstrip("/") + "/sms/kannel/dlr"
        # The gateway refuses webhooks without the token, delivery reports included. smsbox
        # expands every %x in the dlr-url, so the URL-encoded token has its % doubled.
        self._dlr_token = f"&token={quote(webhook_token, safe='').replace('%', '%%')}" if webhook_token else ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=50))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def sendsms_params(self, message: OutgoingSms) -> dict[str, str]:
        # smsbox expands %d and %A in the dlr-url; our id is a plain number, safe in it.
        dlr_url = f"{self._dlr_base}?id={message.id}&type=%d&answer=%A{self._dlr_token}"
        params = {
            "username": self._settings.username,
            "password": self._settings.password,
            "to": message.to,
            "text": message.text,
            "coding": _CODING[message.encoding],
            "charset": "UTF-8",
            "dlr-mask": str(self._settings.dlr_mask),
            "dlr-url": dlr_url,
        }
        if message.sender:
            params["from"] = message.sender
        return params

    async def send(self, message: OutgoingSms) -> SendResult:
        assert self._session is not None, "start() first"
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in self.sendsms_params(message).items())
        try:
            async with self._session.get(f"{self._settings.sendsms_url}?{query}") as response:
                body = (await response.text()).strip()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(SendOutcome.RETRY, error=f"kannel unreachable: {type(exc).__name__}")
        if status in (200, 202):
            return SendResult(SendOutcome.SENT)
        if status == 503:  # queue full / bearerbox down: smsbox says so with 503
            return SendResult(SendOutcome.THROTTLED if "queue" in body.lower() else SendOutcome.RETRY, error=body[:200])
        if status in (401, 403) or "sender missing" in body.lower():
            # Wrong credentials or no sender configured: an operator must fix the settings;
            # the message is kept (and retried) rather than lost.
            return SendResult(SendOutcome.RETRY, error=f"kannel refused our settings: {body[:150]}")
        if 400 <= status < 500:
            return SendResult(SendOutcome.FAILED, error=f"kannel rejected the message: {status} {body[:150]}")
        return SendResult(SendOutcome.RETRY, error=f"kannel answered {status}: {body[:150]}")


# Answer inbound webhooks with an empty body? (smsbox sends a non-empty answer body to the phone as a reply)
INBOUND_ACK_EMPTY = True

# %c: 0 7-bit (Kannel holds it as UTF-8), 1 8-bit, 2 UCS-2; -1 or empty when unknown.
_CODINGS = {"", "-1", "0", "1", "2"}
# %C names Kannel writes that are not Python codec names, and Unicode names that all mean
# big-endian 16-bit units in SMS.
_UTF16_NAMES = {"utf-16be", "utf-16", "ucs-2", "ucs2", "ucs-2be", "iso-10646-ucs-2", "unicode"}
_AS_7BIT = {"gsm", "gsm7", "gsm-7", "8-bit", "8bit", "binary"}  # UTF-8, else raw bytes as latin-1
# Python codecs that are not character sets a provider could mean.
_NOT_CHARSETS = {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined", "mbcs", "oem"}
_MAX_FIELDS = 64


def _charset_codec(charset: str) -> str:
    """The Python codec for a %C value: "utf-16-be", "7bit" (UTF-8 then latin-1) or a codec name."""
    name = charset.strip().lower()
    if name in _UTF16_NAMES:
        return "utf-16-be"
    if name in _AS_7BIT:
        return "7bit"
    try:
        if len(name) > 40:
            raise LookupError(name)
        info = codecs.lookup(name)
    except LookupError:
        raise BadRequest(f"charset {charset[:40]!r} is not a character set this gateway knows") from None
    codec = info.name
    # Not the bytes-to-bytes codecs (base64, zlib, rot13...) nor the escape codecs.
    if not getattr(info, "_is_text_encoding", True) or codec in _NOT_CHARSETS:
        raise BadRequest(f"charset {charset[:40]!r} is not a character set this gateway knows")
    return "utf-16-be" if codec in ("utf-16-be", "utf-16") else codec


def _utf16(raw: bytes) -> str:
    # %a drops a whitespace byte now and then (a trailing space loses its 0x20): an odd
    # length loses its last, incomplete unit rather than the message.
    if len(raw) % 2:
        raw = raw[:-1]
    return raw.decode("utf-16-be", "replace").removeprefix("\ufeff")


def _plausible_char(ch: str) -> bool:
    cp = ord(ch)
    return (
        (0x20 <= cp < 0x250 and not 0x7F <= cp < 0xA0)  # Latin, Latin-1, Extended-A/B
        or ch in "\t\n\r"
        or 0x300 <= cp < 0x370  # combining diacritics (decomposed Vietnamese)
        or 0x1E00 <= cp < 0x1F00  # Latin Extended Additional: the Vietnamese letters
        or 0x2000 <= cp < 0x2070 or 0x20A0 <= cp < 0x20D0  # punctuation, currency (₫)
        or 0x2100 <= cp < 0x2C00 or cp >= 0x1F000  # symbols, emoji
    )


def _utf16_if_text(raw: bytes) -> str | None:
    """``raw`` read as UTF-16BE, if that reads as text (Latin and Vietnamese letters, digits,
    punctuation, emoji); None if it does not."""
    data = raw[:-1] if len(raw) % 2 else raw
    if not data:
        return None
    try:
        text = data.decode("utf-16-be").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    plausible = sum(map(_plausible_char, text))
    return text if text and plausible >= 0.9 * len(text) else None


def _utf8_or_latin1(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_text(raw: bytes, coding: str | None = None, charset: str | None = None) -> str:
    """The text of an MO from the bytes smsbox put in the get-url, by %c and %C.

    coding 2 (or a UTF-16/UCS-2 charset): UTF-16BE. Another charset: that codec. coding 0 or
    1 without a charset: UTF-8, else latin-1. Neither (a get-url without %c and %C):
    UTF-16BE when the bytes read as UTF-16 text and not as clean UTF-8 (UTF-8 that fails,
    or holds NULs: the high bytes of ASCII in UTF-16), else UTF-8, else latin-1.
    Raises BadRequest for an unknown coding or charset.
    """
    coding = (coding or "").strip()
    charset = (charset or "").strip()
    if coding not in _CODINGS:
        raise BadRequest(f"coding {coding[:20]!r} is not a Kannel coding (0, 1 or 2)")
    codec = _charset_codec(charset) if charset else None
    if coding == "2" or codec == "utf-16-be":
        return _utf16(raw)
    if codec is not None and codec != "7bit":
        return raw.decode(codec, "replace")
    if codec == "7bit" or coding in ("0", "1"):
        return _utf8_or_latin1(raw)
    try:
        utf8: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        utf8 = None
    if utf8 is not None and "\x00" not in utf8:
        return utf8
    utf16 = _utf16_if_text(raw)
    if utf16 is not None:
        return utf16
    return utf8 if utf8 is not None else raw.decode("latin-1")


def params_from_raw_query(raw: bytes | str) -> dict[str, str]:
    """The get-url's parameters from the query string as it came over the wire
    (``request.rel_url.raw_query_string``), with ``text`` decoded by ``coding``/``charset``.

    Other fields are read as UTF-8. The first of repeated fields counts. Raises BadRequest
    for an unknown coding or charset, or too many fields.
    """
    if isinstance(raw, str):
        # From aiohttp it is ASCII (the request line may not carry other bytes); anything
        # else is read as a browser would have sent it, in UTF-8.
        raw = raw.encode("utf-8", "surrogateescape")
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1",
                          max_num_fields=_MAX_FIELDS)
    except ValueError:
        raise BadRequest(f"the query string has more than {_MAX_FIELDS} fields") from None
    fields: dict[str, bytes] = {}
    for key, value in pairs:
        fields.setdefault(key.encode("latin-1").decode("utf-8", "replace"), value.encode("latin-1"))
    params = {key: value.decode("utf-8", "replace") for key, value in fields.items() if key != "text"}
    if "text" in fields:
        params["text"] = decode_text(fields["text"], params.get("coding"), params.get("charset"))
    return params


def parse_inbound(params: Mapping[str, str | bytes]) -> IncomingSms:
    """An MO from the get-url's parameters: decoded ones (``params_from_raw_query``), or
    ``text`` still as bytes, decoded here by ``coding``/``charset``."""
    sender = normalize_msisdn(params.get("from"))
    if sender is None:
        raise BadRequest("from is not a valid Vietnamese mobile number")
    text = params.get("text")
    if text is None:
        raise BadRequest("text is required")
    if isinstance(text, bytes):
        text = decode_text(text, params.get("coding"), params.get("charset"))
    return IncomingSms(
        transport=NAME,
        sender=sender,
        receiver=(params.get("to") or "").strip(),
        text=text,
        provider_id=(params.get("id") or None),
    )


def parse_dlr(params: Mapping[str, str]) -> DeliveryReport:
    raw_id = params.get("id", "")
    if not raw_id.isdigit():
        raise BadRequest("id must be the gateway's message id")
    state = DLR_TYPES.get(params.get("type", ""))
    if state is None:
        raise BadRequest(f"unknown delivery report type {params.get('type')!r}")
    return DeliveryReport(state=state, message_id=int(raw_id), reason=(params.get("answer") or "")[:200])
