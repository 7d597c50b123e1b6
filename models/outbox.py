"""Writing to the outbox: the domain side of every SMS the gateway sends.

A message is a row of ``outbound_sms`` written inside the unit of work of the change that
caused it (``OutboxWriter.enqueue(tx, ...)``), so a rolled-back change sends nothing and a
committed one cannot lose its SMS. The text is prepared for the air here (encoding, exact
parts, cut to ``max_parts`` with a marker), non-urgent messages wait for the end of quiet
hours, and non-essential ones are not written at all for a phone that opted out.
The dispatcher that sends the rows lives at the edge (``gateway.outbox``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from models.entities import SmsKind, SmsStatus
from models.fastsql import Tx
from models.sms_text import GSM7_BASIC, GSM7_EXTENSION, Encoding, Policy, SmsText, fit_parts, prepare, unaccent, units

# ASCII that is not in GSM-7's basic table nor its extension (tab, backtick, controls).
_ASCII_NOT_GSM7 = frozenset(chr(i) for i in range(128)) - GSM7_BASIC - GSM7_EXTENSION
_ONE_PART = 160


def plain_gsm7(text: str) -> bool:
    """ASCII and all in the GSM-7 alphabet: every policy sends it as it is, in GSM-7."""
    return text.isascii() and _ASCII_NOT_GSM7.isdisjoint(text)


def one_part_gsm7(text: str) -> SmsText | None:
    """``prepare(text, policy)`` for any policy, cheaply, when ``text`` is plain GSM-7
    ASCII that fits one part (what the notices are); None otherwise (measure it in full).
    Every policy sends such a text as it is, in GSM-7: unaccenting and NFC change no
    ASCII character that is in the alphabet."""
    if not plain_gsm7(text):
        return None
    length = units(text, Encoding.GSM7)
    return SmsText(text, Encoding.GSM7, 1, length) if length <= _ONE_PART else None


# ``unaccent`` one character at a time, as a translation table, for the characters where
# that is the same as ``unaccent`` of the whole text: ASCII, Latin-1, Latin Extended-A/B,
# the combining diacritics, Latin Extended Additional (every Vietnamese letter) and the
# typography ``unaccent`` maps. After their marks are dropped these are starters that NFC
# never composes with one another (only Hangul jamo and a few Indic vowel signs do), so
# the whole text's NFD, strip and NFC give the concatenation of each character's.
_LATIN = [*range(0x250), *range(0x300, 0x370), *range(0x1E00, 0x1F00), *range(0x2000, 0x2070), 0xFEFF]
_UNACCENT_TABLE = {code: unaccent(chr(code)) for code in _LATIN if unaccent(chr(code)) != chr(code)}


def unaccented_one_part(text: str) -> SmsText | None:
    """``prepare(text, Policy.UNACCENT)`` for a text that unaccents to plain GSM-7 ASCII
    of one part (a Vietnamese notice), by one ``str.translate``; None otherwise (measure it
    in full). A character outside the table is left as it is by ``translate``; a text holding
    one is never ASCII afterwards, unless it was ASCII, which the table covers."""
    plain = text.translate(_UNACCENT_TABLE)
    if not plain.isascii():
        return None
    return one_part_gsm7(plain)


class QuietHours:
    """Service SMS are not sent between ``start`` and ``end`` local time unless urgent."""

    def __init__(self, tz: dt.tzinfo, start: dt.time, end: dt.time) -> None:
        self._tz, self._start, self._end = tz, start, end

    def release(self, moment: dt.datetime) -> dt.datetime:
        """``moment`` if it is outside quiet hours, else when they end."""
        local = moment.astimezone(self._tz)
        clock = local.time()
        start, end = self._start, self._end
        quiet = (start <= clock or clock < end) if start > end else (start <= clock < end)
        if not quiet:
            return moment
        day = local.date() if clock < end else local.date() + dt.timedelta(days=1)
        return dt.datetime.combine(day, end, tzinfo=self._tz).astimezone(dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class QueuedSms:
    """A message as written to the outbox."""

    id: int
    to_phone: str
    text: str
    encoding: Encoding
    parts: int
    kind: SmsKind
    next_attempt_at: dt.datetime
    expires_at: dt.datetime
    status: SmsStatus = SmsStatus.QUEUED


_OPTED_OUT = "SELECT 1 FROM phone_preference WHERE phone_key=? AND notifications_off=?"
_ROWS_PER_INSERT = 500  # 11 parameters each: well under SQLite's and asyncpg's 32,767
_INSERTS: dict[int, str] = {}


def _insert_sql(rows: int) -> str:
    return (
        "INSERT INTO outbound_sms (to_phone, text, encoding, parts, kind, urgent, status, attempts,"
        " next_attempt_at, expires_at, transport, last_error, created_at) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,0,?,?,'',?,?)"] * rows) + " RETURNING id"
    )


@dataclass(slots=True)
class OutgoingSms:
    """A message prepared for the outbox, not yet written (``OutboxWriter.write``)."""

    to_phone: str
    text: str
    encoding: Encoding
    parts: int
    kind: SmsKind
    urgent: bool
    next_attempt_at: dt.datetime
    expires_at: dt.datetime
    created_at: dt.datetime
    status: SmsStatus = SmsStatus.QUEUED
    last_error: str = ""

    def stored(self, sms_id: int) -> QueuedSms:
        return QueuedSms(sms_id, self.to_phone, self.text, self.encoding, self.parts, self.kind,
                         self.next_attempt_at, self.expires_at, self.status)


class OutboxWriter:
    def __init__(
        self,
        *,
        policy: Policy,
        max_parts: int,
        ttl_seconds: int,
        quiet: QuietHours,
        phone_key: Callable[[str], str],
        cut_markers: Mapping[str, str],
        default_lang: str = "vi",
    ) -> None:
        self._policy = policy
        self._max_parts = max_parts
        self._ttl_seconds = ttl_seconds
        self._quiet = quiet
        self._phone_key = phone_key
        self._markers = cut_markers
        self._default_lang = default_lang
        # Messages written so far by this process: a unit of work compares it before and
        # after its commit to know whether to wake the dispatcher.
        self.written = 0

    def after_quiet_hours(self, moment: dt.datetime) -> dt.datetime:
        return self._quiet.release(moment)

    async def opted_out(self, tx: Tx, phone: str) -> bool:
        return bool(await tx.fetch(_OPTED_OUT, (self._phone_key(phone), True)))

    async def opted_out_many(self, tx: Tx, phones: Sequence[str]) -> set[str]:
        """``opted_out`` for a batch (``message(..., opted_out=phone in result)``): the phones
        that turned notifications off, read with one statement per 500 phones."""
        keys: dict[str, list[str]] = {}
        for phone in dict.fromkeys(phones):
            keys.setdefault(self._phone_key(phone), []).append(phone)
        unique = list(keys)
        off: set[str] = set()
        for start in range(0, len(unique), _ROWS_PER_INSERT):
            chunk = unique[start:start + _ROWS_PER_INSERT]
            rows = await tx.fetch(
                f"SELECT phone_key FROM phone_preference WHERE notifications_off=? AND phone_key IN "
                f"({','.join('?' * len(chunk))})", [True, *chunk])
            for (key,) in rows:
                off.update(keys[key])
        return off

    def prepared(self, text: str, lang: str | None = None):
        """The text as ``enqueue`` would put it on the air: encoding, exact parts, cut."""
        prepared = prepare(text[: self._max_parts * 160 * 3 + 160], self._policy)
        return fit_parts(prepared, self._max_parts, self._markers[lang or self._default_lang])

    def phone_key(self, phone: str) -> str:
        return self._phone_key(phone)

    async def enqueue(
        self,
        tx: Tx,
        to: str,
        text: str,
        kind: SmsKind,
        now: dt.datetime,
        *,
        urgent: bool = False,
        ttl_seconds: int | None = None,
        lang: str | None = None,
        delay_seconds: float = 0,
        opted_out: bool | None = None,
    ) -> QueuedSms | None:
        """Write one message; None if the phone opted out of this kind of message.

        A text longer than ``max_parts`` parts is cut, and says so in ``lang``. A message
        that is neither urgent nor essential goes no sooner than ``delay_seconds`` from now
        (a debounce), and after quiet hours. ``opted_out``, when the caller read it already
        for a whole batch, saves the lookup.
        """
        if not kind.essential and opted_out is None:
            opted_out = await self.opted_out(tx, to)
        queued = self.message(to, text, kind, now, urgent=urgent, ttl_seconds=ttl_seconds, lang=lang,
                              delay_seconds=delay_seconds, opted_out=bool(opted_out))
        if queued is None:
            return None
        (sms_id,) = await self.write(tx, [queued])
        return queued.stored(sms_id)

    def message(
        self,
        to: str,
        text: str,
        kind: SmsKind,
        now: dt.datetime,
        *,
        opted_out: bool,
        urgent: bool = False,
        ttl_seconds: int | None = None,
        lang: str | None = None,
        delay_seconds: float = 0,
    ) -> "OutgoingSms | None":
        """``enqueue``'s message, not yet written: for a batch that writes many at once
        (``write``). None if the phone opted out of this kind of message."""
        if not kind.essential and opted_out:
            return None
        # Work bounded before any measuring: nothing past the kept parts is ever sent
        # (x3: unaccenting decomposed text can shrink it by up to three).
        prepared = one_part_gsm7(text)
        if prepared is None and self._policy is Policy.UNACCENT and len(text) <= 4 * _ONE_PART:
            prepared = unaccented_one_part(text)
        if prepared is None:
            prepared = prepare(text[: self._max_parts * 160 * 3 + 160], self._policy)
            prepared = fit_parts(prepared, self._max_parts, self._markers[lang or self._default_lang])
        due = now if urgent or kind.essential else self.after_quiet_hours(now + dt.timedelta(seconds=delay_seconds))
        expires = max(due, now) + dt.timedelta(seconds=ttl_seconds or self._ttl_seconds)
        return OutgoingSms(to, prepared.text, prepared.encoding, prepared.parts, kind, urgent, due, expires, now)

    async def write(self, tx: Tx, messages: Sequence["OutgoingSms"]) -> list[int]:
        """Write messages in multi-row INSERTs; their ids, in the order given.

        The ids of one INSERT's rows are allocated in the order of its VALUES (SQLite's
        rowids and PostgreSQL's sequence alike, the writer holding its lock), so the
        returned ids, sorted, match the rows in order: RETURNING itself promises no order.
        """
        ids: list[int] = []
        for start in range(0, len(messages), _ROWS_PER_INSERT):
            chunk = messages[start:start + _ROWS_PER_INSERT]
            sql = _INSERTS.get(len(chunk)) or _INSERTS.setdefault(len(chunk), _insert_sql(len(chunk)))
            values: list = []
            for m in chunk:
                values += (m.to_phone, m.text, m.encoding.value, m.parts, m.kind.value, m.urgent, m.status.value,
                           m.next_attempt_at, m.expires_at, m.last_error, m.created_at)
            rows = await tx.fetch(sql, values)
            if len(rows) != len(chunk):
                raise RuntimeError(f"outbox insert wrote {len(rows)} of {len(chunk)} rows")
            ids += sorted(row[0] for row in rows)
        self.written += len(ids)
        return ids
