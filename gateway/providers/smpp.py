"""SMPP 3.4 transport: the gateway bound to an operator's SMSC as an ESME (transceiver).

What it does
------------
* ``start()`` binds as a transceiver (bind_transceiver) and keeps the session up:
  enquire_link after ``enquire_link_seconds`` without traffic, and after any drop
  (SMSC restart, network cut, no answer to enquire_link) a new connect + bind every
  ``reconnect_seconds`` until it works. ``close()`` unbinds.
* ``send()`` submits every part of one ``OutgoingSms``: data_coding 0 (SMSC default
  alphabet, GSM 03.38 unpacked) for ``Encoding.GSM7``, 8 for ``Encoding.UCS2``;
  destination TON 1 / NPI 1, E.164 without '+'. A long message is split with
  ``models.sms_text.split_parts`` (so it goes out in exactly the parts the gateway
  counted) into concatenated parts: esm_class UDHI 0x40 + a 6-octet UDH (IEI 0x00,
  8-bit reference, 3GPP TS 23.040 9.2.3.24.1). Parts go one after another and stop at the
  first part the SMSC refuses. At most ``window`` submit_sm are outstanding (sent, no
  submit_sm_resp yet) across all concurrent ``send()`` calls.
  ``SendResult.provider_id`` is the SMSC message_id of the **first** part. Receipts for
  the other parts (while this process remembers them) only count if they say FAILED,
  and are reported under the first part's id.
  Outcome: ESME_ROK -> SENT; ESME_RTHROTTLED -> THROTTLED; ESME_RMSGQFUL, ESME_RSYSERR,
  other transient statuses, statuses outside SMPP 3.4, no bind, connection lost,
  no submit_sm_resp within ``response_timeout`` -> RETRY; any other status -> FAILED.
  It never raises for network trouble.
* Inbound deliver_sm: a delivery receipt (esm_class type 0x04 or 0x20, or a
  receipted_message_id TLV, or an "id:... stat:..." text) goes to ``sink.report``; any
  other deliver_sm (a citizen's SMS, concatenated parts joined) goes to ``sink.incoming``.
  The deliver_sm is acknowledged first and the sink is called after that from one
  queue, in order. So a failing sink loses that message rather than tearing the session down.

Library: aiosmpplib 0.7.4 (PyPI, asyncio, pure Python, no dependencies). Checked by
reading its source and by the tests in tests/test_smpp_transport.py, which run
against a real SMSC (smpp34's Rust server, tests/peers/smsc.py):

* ``ESME.start()`` runs connect + bind, then the receive, send and enquire_link tasks.
  When any of them ends, it calls ``retry_timer.wait()`` and connects again. Our retry
  timer is therefore where a dropped link is noticed: in-flight submits get RETRY there.
* Messages go out only through ``ESME.broker`` (a queue that the send task reads).
  ``hook.sending`` runs just before each PDU is written, with the sequence number
  already set. A ``ValueError`` raised from it makes the library skip that message and
  keep the session up, which is how a part we gave up on (timed out, link dropped) is
  never sent late.
* Its own long-message splitting is not used. It counts GSM characters and not septets:
  200 x '€' made a 312-octet part. It picks GSM or UCS-2 from the text, ignoring our
  ``Encoding``. Its SAR path reads an unset variable: a 300-character message without
  UDHI dropped the session and never reached the SMSC. So parts are pre-encoded here (its
  GSM 03.38 / UCS-2 codecs) and set with ``SubmitSm.set_encoded_message``, with
  ``auto_message_payload=True`` so the library does not split again.
* Its deliver_sm handling is replaced (``_Esme._handle_request``): the deliver_sm goes to
  the hook as parsed, the library acknowledges it, and this module does the rest.
  ``DeliverSm.parse_receipt()`` only reads "YYMMDDhhmm" dates. It raised ValueError on
  "submit date:240101120000", and that error ended the session; the SMSC then
  redelivered the receipt, and the same thing happened again. A deliver_sm with an empty
  short_message and no message_payload fails its constructor. Those are receipts made of
  TLVs only (receipted_message_id + message_state), and the library answered them with
  generic_nack (``_DeliverSm`` accepts an empty body). Its reassembly of concatenated
  incoming SMS keys by reference only, sorts parts as strings ("10" < "2"), and reads a
  16-bit reference (IEI 0x08) as 4 bytes. Parts are joined here instead, keyed by
  sender, receiver, reference and part count.
* Parsing a PDU header raises ValueError for a command_status outside its SMPP 3.4 enum
  (e.g. a vendor-specific 0x401), which also ended the session. ``_Esme._get_pdu`` reads
  the header itself, gives the library ESME_RUNKNOWNERR instead, and keeps the real code
  for the error text.
* Its default correlator keeps every message id for 3 days in a dict that it scans on
  every submit. Ours keeps only request/response pairs.
* ``ESME.stop()`` writes unbind and half-closes the socket at once; ``_Esme._disconnect``
  waits (at most 2 s) for unbind_resp or for the SMSC to close the connection first.
  The library also never closes a connection's socket; ``_Esme`` does.
* Its logs carry whole messages (numbers, text) as JSON. Only the event line is
  forwarded to our logger (``_LibraryLogBridge``).
* ``_Esme`` overrides private methods (``connect``, ``_get_pdu``, ``_handle_request``,
  ``_disconnect``) and reads private state, so the dependency is pinned to 0.7.x.

SMSC facts (smpp34 1.5.0's server, see tests/peers/smsc.py): it answers enquire_link by
itself; on unbind it mostly closes the connection without unbind_resp; ``reject`` sends
the SMPP 3.4 status it is given (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL 0x14...); it hands
the ESME's short_message over byte for byte. So the tests check UDH and text on the
SMSC side with their own decoder.
"""

from __future__ import annotations

import datetime as dt

import asyncio
import hashlib
import itertools
import logging
import random
import re
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractCorrelator,
    AbstractHook,
    AbstractRetryTimer,
    AbstractThrottleHandler,
    BindMode,
    BindTransceiverResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    GenericNack,
    GSM7BitCodec,
    PhoneNumber,
    SmppCommand,
    SmppCommandStatus,
    SmppMessage,
    SmppSessionState,
    SubmitSm,
    SubmitSmResp,
    UCS2Codec,
    Unbind,
    UnbindResp,
)
from aiosmpplib.protocol import PDU_HEADER_LENGTH
from aiosmpplib.state import MESSAGE_STATE, RECEIPTED_MESSAGE_ID, USER_MESSAGE_REFERENCE, PduHeader

from gateway.logs import get_logger
from gateway.phones import mask, normalize_msisdn
from gateway.settings import SmppSettings
from gateway.sms import (
    DeliveryReport,
    DeliveryState,
    IncomingSms,
    OutgoingSms,
    SendOutcome,
    SendResult,
    SmsSink,
    SmsTransport,
)
from models.sms_text import Encoding, split_parts

log = get_logger("gateway.providers.smpp")

# Receipt "stat:" (SMPP 3.4 Appendix B) -> our delivery state.
DLR_STATES: dict[str, DeliveryState] = {
    "DELIVRD": DeliveryState.DELIVERED,
    "ACCEPTD": DeliveryState.SENT,
    "ENROUTE": DeliveryState.SENT,
    "UNDELIV": DeliveryState.FAILED,
    "EXPIRED": DeliveryState.FAILED,
    "REJECTD": DeliveryState.FAILED,
    "DELETED": DeliveryState.FAILED,
    "UNKNOWN": DeliveryState.FAILED,
}
# message_state TLV (SMPP 3.4 5.2.28) -> the same names, for receipts without a text.
MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
    5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}
# submit_sm_resp statuses worth another try later (anything else but THROTTLED is final).
TRANSIENT_STATUSES: frozenset[SmppCommandStatus] = frozenset({
    SmppCommandStatus.ESME_RMSGQFUL,  # message queue full
    SmppCommandStatus.ESME_RSYSERR,  # system error
    SmppCommandStatus.ESME_RX_T_APPN,  # ESME receiver temporary app error
    SmppCommandStatus.ESME_RINVBNDSTS,  # "incorrect bind status": the SMSC lost our bind
    SmppCommandStatus.ESME_RSUBMITFAIL,  # submit failed, no reason given
    SmppCommandStatus.ESME_RUNKNOWNERR,  # also what a vendor-specific status is read as
})
_KNOWN_STATUSES = frozenset(int(status) for status in SmppCommandStatus)

CONCAT_IEI_8BIT = 0x00  # 3GPP TS 23.040 9.2.3.24.1, concatenated SM, 8-bit reference
ESM_UDHI = 0x40  # esm_class bit: short_message starts with a UDH
ESM_TYPE_MASK = 0x3C  # esm_class message type bits
ESM_TYPE_RECEIPT = 0x04  # SMSC delivery receipt
ESM_TYPE_INTERMEDIATE = 0x20  # intermediate delivery notification
MAX_OTHER_PARTS = 100_000  # part message_id -> first part's, kept for receipts
SEGMENT_TTL = 600.0  # seconds to wait for the missing parts of a concatenated MO

_RECEIPT_ID = re.compile(r"(?i)(?:^|\s)id:(\S+)")
_RECEIPT_STAT = re.compile(r"(?i)(?:^|\s)stat:(\w+)")
_RECEIPT_ERR = re.compile(r"(?i)(?:^|\s)err:(\w+)")

# Library log lines that are normal for how we use it.
_QUIET_LIBRARY_EVENTS = (
    "SMPP message could not be sent",  # our send_error hook turns it into RETRY/FAILED (and logs)
)


class _Abandoned(ValueError):
    """Raised from the hook so aiosmpplib skips a queued submit_sm we no longer wait for."""


class _Closed(ValueError):
    """Raised from the broker on close, so the library's send task ends at once."""


@dataclass
class _Pending:
    key: str
    future: asyncio.Future[SendResult]
    seq: int | None = None


@dataclass
class _Segments:
    started: float
    total: int
    texts: dict[int, str] = field(default_factory=dict)


def parse_receipt_text(text: str) -> dict[str, str]:
    """id / stat / err from an Appendix B receipt text; tolerant of the date formats."""
    fields: dict[str, str] = {}
    for key, pattern in (("id", _RECEIPT_ID), ("stat", _RECEIPT_STAT), ("err", _RECEIPT_ERR)):
        found = pattern.search(text)
        if found:
            fields[key] = found.group(1)
    return fields


def concat_udh(reference: int, total: int, number: int) -> bytes:
    """User data header for part ``number`` of ``total`` (8-bit reference)."""
    return bytes((5, CONCAT_IEI_8BIT, 3, reference & 0xFF, total, number))


def _describe(status: int, vendor_status: int | None = None) -> str:
    if vendor_status is not None:
        return f"vendor-specific status 0x{vendor_status:08X}"
    try:
        name = SmppCommandStatus(status).name
    except ValueError:
        name = "status"
    return f"{name} (0x{status:08X})"


class _LibraryLogBridge(logging.Handler):
    """aiosmpplib logs whole messages as JSON after " >>> ": forward only the event line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            error = record.exc_info[1] if record.exc_info else None
            if isinstance(error, (_Abandoned, _Closed)):
                return
            event = str(record.msg).split(" >>> ", 1)[0]
            if record.args:
                try:
                    event = event % record.args
                except (TypeError, ValueError):
                    pass
            fields: dict[str, Any] = {"library_event": event}
            if error is not None:
                fields["error"] = type(error).__name__
            if record.levelno >= logging.WARNING and not event.startswith(_QUIET_LIBRARY_EVENTS):
                log.warning("smpp_library", **fields)
            else:
                log.debug("smpp_library", **fields)
        except Exception:  # noqa: BLE001 - logging must never break the session
            pass


class _Broker(AbstractBroker):
    """The library's outbound queue, with a close() that ends a waiting dequeue()."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[SmppMessage] = asyncio.Queue()
        self._closed = asyncio.Event()

    async def enqueue(self, message: SmppMessage) -> None:
        self._queue.put_nowait(message)

    async def dequeue(self) -> SmppMessage:
        if self._closed.is_set():
            raise _Closed("transport closed")
        getter = asyncio.ensure_future(self._queue.get())
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise _Closed("transport closed")

    def drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def close(self) -> None:
        self._closed.set()


class _Correlator(AbstractCorrelator):
    """Request/response pairs only, pruned by age."""

    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._requests: OrderedDict[int, tuple[float, SmppMessage]] = OrderedDict()

    def get_cumulated_status(self, ref_num: int) -> int:
        return 0

    async def expired(self, smpp_message: SmppMessage) -> None:
        return None

    async def put(self, smpp_message: SmppMessage) -> None:
        now = time.monotonic()
        while self._requests:
            seq, (stored, _message) = next(iter(self._requests.items()))
            if now - stored <= self._max_age:
                break
            del self._requests[seq]
        self._requests[smpp_message.sequence_num] = (now, smpp_message)

    async def get(self, response: SmppMessage) -> SmppMessage | None:
        item = self._requests.pop(response.sequence_num, None)
        return item[1] if item else None

    async def put_delivery(self, smsc_message_id: str, submit_sm: SubmitSm) -> None:
        return None  # receipts are matched by message id in the gateway's outbox

    async def get_delivery(self, receipt: DeliverSm) -> SubmitSm | None:
        return None

    async def get_segmented(self, smpp_seq_num: int, remove: bool = False) -> tuple[None, int]:
        return None, 0  # we never let the library split outgoing messages

    async def put_delivery_segmented(self, deliver_sm: DeliverSm) -> DeliverSm | None:
        return deliver_sm  # not called: _Esme hands segments over, SmppTransport joins them


class _NoThrottle(AbstractThrottleHandler):
    """Throttling is reported to the dispatcher (THROTTLED), which slows down itself."""

    async def throttled(self) -> None:
        return None

    async def not_throttled(self) -> None:
        return None

    async def allow_request(self) -> bool:
        return True

    async def throttle_delay(self) -> float:
        return 0.0


class _RetryTimer(AbstractRetryTimer):
    """Called by the library each time the link is down: fail what is in flight, then wait."""

    def __init__(self, transport: SmppTransport, seconds: float) -> None:
        self._transport = transport
        self._seconds = seconds

    async def wait(self) -> None:
        self._transport._link_down("connection to the SMSC lost")
        try:  # sleep, unless the transport closes meanwhile
            await asyncio.wait_for(self._transport._closed.wait(), self._seconds)
        except TimeoutError:
            pass

    def reset(self) -> None:
        return None

    def next_delay(self) -> float:
        return self._seconds


class _Hook(AbstractHook):
    def __init__(self, transport: SmppTransport) -> None:
        self._transport = transport

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        self._transport._on_sending(smpp_message)

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        try:
            self._transport._on_received(smpp_message)
        except Exception as exc:  # noqa: BLE001 - an error here would end the session
            log.error("smpp_hook_failed", error=type(exc).__name__)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        try:
            self._transport._on_send_error(smpp_message, error)
        except Exception as exc:  # noqa: BLE001
            log.error("smpp_hook_failed", error=type(exc).__name__)


class _Esme(ESME):
    """aiosmpplib's ESME with the fixes described in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vendor_statuses: dict[int, int] = {}  # sequence number -> status outside SMPP 3.4
        self.last_writer: asyncio.StreamWriter | None = None
        self.unbind_acked = asyncio.Event()

    async def connect(self) -> None:
        # The library drops the previous connection's writer without closing it.
        if self._session_state != self.bind_mode.session_state:
            self.close_socket()
        try:
            await super().connect()
        finally:
            self.last_writer = self._writer

    async def _disconnect(self) -> None:
        # The library writes unbind and half-closes the socket at once. Here unbind waits
        # for unbind_resp, or for the SMSC to close the connection (smpp34 does that
        # without answering), at most 2 s.
        bound = self.bind_mode.session_state
        if self._writer is not None and self._session_state == bound:
            self.unbind_acked.clear()
            await self._send_data(Unbind())
            self._data_received.set()  # the enquire_link task stops waiting for traffic
            waits = {asyncio.ensure_future(self.unbind_acked.wait()), asyncio.ensure_future(self._shut_down.wait())}
            try:
                await asyncio.wait(waits, timeout=min(2.0, self.socket_timeout), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
            if self._session_state == bound:
                self._session_state = SmppSessionState.OPEN  # unbound: no second unbind
        writer = self._writer
        if writer is not None and (writer.is_closing() or (self._reader is not None and self._reader.at_eof())):
            self._writer = None  # the SMSC has closed the connection already
            return
        await super()._disconnect()

    def close_socket(self) -> None:
        if self.last_writer is not None:
            self.last_writer.close()
            self.last_writer = None

    async def _get_pdu(self) -> tuple[bytes, PduHeader]:
        assert self._reader is not None
        header_data = await self._reader.readexactly(PDU_HEADER_LENGTH)
        length, _command, status, sequence = struct.unpack("!IIII", header_data)
        body = await self._reader.readexactly(length - PDU_HEADER_LENGTH)
        if status not in _KNOWN_STATUSES:
            self.vendor_statuses[sequence] = status
            header_data = (
                header_data[:8] + struct.pack("!I", SmppCommandStatus.ESME_RUNKNOWNERR) + header_data[12:]
            )
        return header_data + body, SmppMessage.parse_header(header_data)

    async def _handle_request(self, pdu: bytes, header: PduHeader) -> SmppMessage | None:
        if header.smpp_command != SmppCommand.DELIVER_SM:
            return await super()._handle_request(pdu, header)
        # deliver_sm is parsed here and handed over as it is: no parse_receipt(), no
        # library reassembly (see the module docstring). The library then acknowledges it.
        try:
            return _DeliverSm.from_pdu(pdu, header, self.default_encoding, self.custom_codecs)
        except (ValueError, LookupError, struct.error) as exc:
            log.warning("smpp_deliver_sm_unparsable", error=type(exc).__name__)
            await self._send_data(GenericNack(header.sequence_num))
            return None


class _DeliverSm(DeliverSm):
    """A DeliverSm that may have no text at all: SMPP 3.4 receipts can be TLVs only."""

    def __post_init__(self) -> None:
        empty = not self.short_message and not self.message_payload
        if empty:
            self.short_message = " "  # SubmitSm.__post_init__ refuses an empty body
        super().__post_init__()
        if empty:
            self.short_message = ""


class SmppTransport(SmsTransport):
    """One SMPP 3.4 transceiver session to the operator's SMSC."""

    name = "smpp"

    def __init__(self, settings: SmppSettings, sink: SmsSink, *, response_timeout: float = 10.0) -> None:
        self._settings = settings
        self._sink = sink
        self._timeout = float(response_timeout)
        self._window = asyncio.Semaphore(max(1, settings.window))
        self._broker = _Broker()
        self._pending: dict[str, _Pending] = {}
        self._pending_by_seq: dict[int, _Pending] = {}
        self._inbound: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self._inbound_task: asyncio.Task | None = None
        self._run_task: asyncio.Task | None = None
        self._attempted = asyncio.Event()  # first bind succeeded or failed
        self._closing = False
        self._closed = asyncio.Event()
        self._was_bound = False
        self._keys = itertools.count(1)
        self._concat_ref = random.randrange(256)
        self._other_parts: OrderedDict[str, str] = OrderedDict()
        self._segments: OrderedDict[tuple[str, str, int, int], _Segments] = OrderedDict()
        self.binds = 0  # successful binds so far
        self.enquire_links_sent = 0
        self.unbinds_sent = 0
        self._esme = self._make_esme()  # checks system_id / password lengths now

    def _make_esme(self) -> _Esme:
        s = self._settings
        return _Esme(
            smsc_host=s.host,
            smsc_port=s.port,
            system_id=s.system_id,
            password=s.password,
            system_type=s.system_type,
            bind_mode=BindMode.TRANSCEIVER,
            enquire_link_interval=float(max(1, s.enquire_link_seconds)),
            log_level=logging.WARNING,
            log_handler=_LibraryLogBridge(),
            hook=_Hook(self),
            broker=self._broker,
            throttle_handler=_NoThrottle(),
            correlator=_Correlator(max_age=max(60.0, 4 * self._timeout)),
            retry_timer=_RetryTimer(self, float(max(1, s.reconnect_seconds))),
            socket_timeout=self._timeout,
        )

    @property
    def bound(self) -> bool:
        return self._esme.session_state == SmppSessionState.BOUND_TRX

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, waiting at most ``response_timeout`` for the first attempt; never raises
        for network trouble (the session keeps retrying in the background)."""
        if self._run_task is not None:
            return
        self._inbound_task = asyncio.create_task(self._inbound_worker(), name="smpp-inbound")
        self._run_task = asyncio.create_task(self._run(), name="smpp-session")
        try:
            await asyncio.wait_for(self._attempted.wait(), self._timeout)
        except TimeoutError:
            pass
        if not self.bound:
            log.warning("smpp_not_bound", host=self._settings.host, port=self._settings.port)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._esme.start()
                return  # only ends by itself after stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the gateway's SMPP link alive
                log.error("smpp_session_crashed", error=type(exc).__name__)
                self._link_down("SMPP session crashed")
                self._esme.close_socket()
                try:
                    await asyncio.wait_for(self._closed.wait(), max(1, self._settings.reconnect_seconds))
                except TimeoutError:
                    pass
                self._esme = self._make_esme()

    async def close(self) -> None:
        """Unbind and disconnect; what is still in flight gets RETRY."""
        if self._closing:
            return
        self._closing = True
        self._closed.set()  # ends a reconnect wait at once
        self._fail_pending("transport closed")
        esme = self._esme
        # stop() marks the shutdown and, when bound, writes unbind before its first wait;
        # only then may the library's send task end (its broker raising _Closed).
        stopping = asyncio.create_task(esme.stop())
        await asyncio.sleep(0)
        self._broker.close()
        run_task = self._run_task
        try:
            await asyncio.wait_for(stopping, self._timeout)
            if run_task is not None:
                await asyncio.wait_for(asyncio.shield(run_task), self._timeout)
        except (TimeoutError, OSError):
            log.warning("smpp_unbind_incomplete")
        for task in (stopping, run_task):
            if task is not None and not task.done():
                task.cancel()
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        esme.close_socket()
        if self._inbound_task is not None:
            try:
                await asyncio.wait_for(self._inbound.join(), self._timeout)
            except TimeoutError:
                log.warning("smpp_inbound_not_drained", left=self._inbound.qsize())
            self._inbound_task.cancel()
            await asyncio.gather(self._inbound_task, return_exceptions=True)
        if self._was_bound:
            log.info("smpp_unbound", host=self._settings.host, port=self._settings.port)
        self._was_bound = False

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: OutgoingSms) -> SendResult:
        if self._closing:
            return SendResult(SendOutcome.RETRY, error="SMPP transport closed")
        if not self.bound:
            return SendResult(SendOutcome.RETRY, error="not bound to the SMSC")
        destination = message.to[1:] if message.to.startswith("+") else message.to
        if not destination.isdigit() or not 1 <= len(destination) <= 20:
            return SendResult(SendOutcome.FAILED, error="invalid destination address")
        try:
            source = self._source_address(message.sender or self._settings.source_addr)
            parts = self._encode(message.text, message.encoding)
        except (ValueError, UnicodeError) as exc:
            return SendResult(SendOutcome.FAILED, error=f"cannot build submit_sm: {exc}")

        ids: list[str] = []
        for number, (text, body, esm_class) in enumerate(parts, start=1):
            key = f"{message.id}:{number}:{next(self._keys)}"
            submit = SubmitSm(
                short_message=text,
                source=source,
                destination=PhoneNumber(destination, TON.INTERNATIONAL, NPI.ISDN),
                esm_class=esm_class,
                registered_delivery=1,  # SMSC delivery receipt on success or failure
                encoding="ucs2" if message.encoding is Encoding.UCS2 else None,  # None: data_coding 0
                auto_message_payload=True,  # already split: the library must not split again
                log_id=key,
            )
            submit.set_encoded_message(body)
            result = await self._submit(submit, key)
            if result.outcome is not SendOutcome.SENT:
                where = f" (part {number} of {len(parts)})" if len(parts) > 1 else ""
                log.warning(
                    "smpp_submit_not_sent",
                    sms_id=message.id,
                    to=mask(message.to),
                    outcome=result.outcome.value,
                    error=result.error,
                    part=number,
                    parts=len(parts),
                )
                return SendResult(result.outcome, error=result.error + where)
            ids.append(result.provider_id or "")
        for other in ids[1:]:
            if other:
                self._other_parts[other] = ids[0]
        while len(self._other_parts) > MAX_OTHER_PARTS:
            self._other_parts.popitem(last=False)
        log.debug("smpp_submitted", sms_id=message.id, to=mask(message.to), parts=len(parts))
        return SendResult(SendOutcome.SENT, provider_id=ids[0] or None)

    def _encode(self, text: str, encoding: Encoding) -> list[tuple[str, bytes, int]]:
        """(part text, short_message octets, esm_class) for each part."""
        if not text:
            raise ValueError("empty message")
        codec = UCS2Codec() if encoding is Encoding.UCS2 else GSM7BitCodec()
        segments = split_parts(text, encoding)
        if len(segments) == 1:
            return [(text, codec.encode(text)[0], 0)]
        if len(segments) > 255:
            raise ValueError(f"{len(segments)} parts, at most 255")
        self._concat_ref = (self._concat_ref + 1) % 256
        total = len(segments)
        return [
            (segment, concat_udh(self._concat_ref, total, number) + codec.encode(segment)[0], ESM_UDHI)
            for number, segment in enumerate(segments, start=1)
        ]

    @staticmethod
    def _source_address(sender: str) -> PhoneNumber:
        if not sender:
            return PhoneNumber("", TON.UNKNOWN, NPI.UNKNOWN)  # the SMSC's default
        if not sender.lstrip("+").isdigit():
            return PhoneNumber(sender, TON.ALPHANUMERIC, NPI.UNKNOWN)  # brand name
        digits = sender.lstrip("+")
        if sender.startswith("+") or (digits.startswith("84") and len(digits) == 11):
            return PhoneNumber(digits, TON.INTERNATIONAL, NPI.ISDN)
        return PhoneNumber(digits, TON.UNKNOWN, NPI.ISDN)  # short code

    async def _submit(self, submit: SubmitSm, key: str) -> SendResult:
        async with self._window:
            if self._closing or not self.bound:
                return SendResult(SendOutcome.RETRY, error="not bound to the SMSC")
            pending = _Pending(key, asyncio.get_running_loop().create_future())
            self._pending[key] = pending
            try:
                await self._broker.enqueue(submit)
                return await asyncio.wait_for(asyncio.shield(pending.future), self._timeout)
            except TimeoutError:
                return SendResult(SendOutcome.RETRY, error=f"no submit_sm_resp within {self._timeout:g}s")
            finally:
                self._pending.pop(key, None)
                if pending.seq is not None:
                    self._pending_by_seq.pop(pending.seq, None)
                if not pending.future.done():
                    pending.future.cancel()

    def _fail_pending(self, reason: str) -> None:
        self._broker.drain()
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_result(SendResult(SendOutcome.RETRY, error=reason))
        self._pending_by_seq.clear()
        self._esme.vendor_statuses.clear()

    def _link_down(self, reason: str) -> None:
        self._attempted.set()
        self._fail_pending(reason)
        if self._was_bound and not self._closing:
            log.warning("smpp_link_down", host=self._settings.host, port=self._settings.port)
        self._was_bound = False

    def _on_sending(self, message: SmppMessage) -> None:
        if isinstance(message, SubmitSm) and not isinstance(message, DeliverSm):
            pending = self._pending.get(message.log_id)
            if pending is None or pending.future.done():
                raise _Abandoned("submit_sm no longer awaited")
            pending.seq = message.sequence_num
            self._pending_by_seq[message.sequence_num] = pending
        elif isinstance(message, EnquireLink):
            self.enquire_links_sent += 1
        elif isinstance(message, Unbind):
            self.unbinds_sent += 1

    def _on_received(self, message: SmppMessage | None) -> None:
        if message is None:
            return
        if isinstance(message, (SubmitSmResp, GenericNack)) and not isinstance(message, DeliverSmResp):
            vendor = self._esme.vendor_statuses.pop(message.sequence_num, None)
            pending = self._pending_by_seq.pop(message.sequence_num, None)
            if pending is not None and not pending.future.done():
                pending.future.set_result(self._result_of(message, vendor))
        elif isinstance(message, DeliverSm):
            self._inbound.put_nowait(message)
        elif isinstance(message, BindTransceiverResp):
            if message.command_status == SmppCommandStatus.ESME_ROK:
                self.binds += 1
                self._was_bound = True
                self._attempted.set()
                log.info("smpp_bound", host=self._settings.host, port=self._settings.port)
            else:
                log.error("smpp_bind_refused", status=_describe(message.command_status))
        elif isinstance(message, UnbindResp):
            self._esme.unbind_acked.set()
        elif isinstance(message, Unbind):
            log.info("smpp_unbind_by_smsc")

    def _on_send_error(self, message: SmppMessage, error: Exception) -> None:
        if isinstance(error, _Abandoned) or not isinstance(message, SubmitSm):
            return
        pending = self._pending.get(message.log_id)
        if pending is None or pending.future.done():
            return
        if isinstance(error, ValueError):
            result = SendResult(SendOutcome.FAILED, error=f"cannot build submit_sm: {error}")
        else:
            result = SendResult(SendOutcome.RETRY, error=f"cannot write to the SMSC: {type(error).__name__}")
        pending.future.set_result(result)

    @staticmethod
    def _result_of(response: SmppMessage, vendor_status: int | None) -> SendResult:
        status = response.command_status
        if isinstance(response, GenericNack):
            outcome = SendOutcome.THROTTLED if status == SmppCommandStatus.ESME_RTHROTTLED else SendOutcome.RETRY
            return SendResult(outcome, error=f"generic_nack {_describe(status, vendor_status)}")
        assert isinstance(response, SubmitSmResp)
        if status == SmppCommandStatus.ESME_ROK:
            return SendResult(SendOutcome.SENT, provider_id=response.message_id or None)
        error = _describe(status, vendor_status)
        if status == SmppCommandStatus.ESME_RTHROTTLED:
            return SendResult(SendOutcome.THROTTLED, error=error)
        if status in TRANSIENT_STATUSES:  # a vendor status arrives as ESME_RUNKNOWNERR
            return SendResult(SendOutcome.RETRY, error=error)
        return SendResult(SendOutcome.FAILED, error=error)

    # -- inbound -----------------------------------------------------------------------

    async def _inbound_worker(self) -> None:
        while True:
            message = await self._inbound.get()
            try:
                await self._handle_deliver(message)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the rest
                log.error("smpp_inbound_failed", error=type(exc).__name__)
            finally:
                self._inbound.task_done()

    async def _handle_deliver(self, message: DeliverSm) -> None:
        params = {param.tag: param.value for param in message.optional_params or []}
        text = message.short_message or message.message_payload
        receipted = params.get(RECEIPTED_MESSAGE_ID)
        fields = parse_receipt_text(text)
        kind = message.esm_class & ESM_TYPE_MASK
        if (
            kind in (ESM_TYPE_RECEIPT, ESM_TYPE_INTERMEDIATE)
            or receipted
            or (kind == 0 and "id" in fields and "stat" in fields)
        ):
            await self._handle_receipt(fields, receipted, params.get(MESSAGE_STATE))
            return
        if message.is_segmented():
            joined = self._join_segments(message, text)
            if joined is None:
                return  # more parts to come
            text = joined
        await self._handle_mo(message, text, params.get(USER_MESSAGE_REFERENCE))

    def _join_segments(self, message: DeliverSm, text: str) -> str | None:
        """The whole text once every part of a concatenated MO is here, else None."""
        now = time.monotonic()
        while self._segments:
            key, oldest = next(iter(self._segments.items()))
            if now - oldest.started <= SEGMENT_TTL:
                break
            del self._segments[key]
        reference, number, total = message.get_segmentation_data()
        if message.esm_class & ESM_UDHI and reference > 0xFF:
            reference >>= 16  # aiosmpplib reads a 16-bit reference (IEI 0x08) as ref, total, seq
        if total <= 1:
            return text
        key = (message.source.number, message.destination.number, reference, total)
        entry = self._segments.get(key)
        if entry is None:
            entry = self._segments[key] = _Segments(now, total)
        entry.texts[number] = text
        if len(entry.texts) < total:
            return None
        del self._segments[key]
        return "".join(entry.texts[n] for n in sorted(entry.texts))

    async def _handle_receipt(self, fields: dict[str, str], receipted: Any, message_state: Any) -> None:
        provider_id = str(receipted).strip() if receipted else fields.get("id", "")
        stat = fields.get("stat", "").upper()
        if not stat and isinstance(message_state, int):
            stat = MESSAGE_STATES.get(message_state, "")
        state = DLR_STATES.get(stat)
        if not provider_id or state is None:
            log.warning("smpp_receipt_unusable", stat=stat or "-", has_id=bool(provider_id))
            return
        err = fields.get("err", "")
        reason = stat if not err.strip("0") else f"{stat} err:{err}"
        first = self._other_parts.get(provider_id)
        if first is not None:
            if state is not DeliveryState.FAILED:
                return  # the first part's receipt speaks for the message
            provider_id, reason = first, f"{reason} (a later part)"
        await self._sink.report(DeliveryReport(state=state, provider_id=provider_id, reason=reason))

    async def _handle_mo(self, message: DeliverSm, text: str, reference: Any) -> None:
        raw = message.source.number
        sender = normalize_msisdn(raw)
        if sender is None and raw.isdigit() and message.source.ton == TON.INTERNATIONAL:
            sender = "+" + raw  # a foreign number: still E.164
        if sender is None:
            log.warning("smpp_mo_unusable_sender", sender=mask(raw), ton=int(message.source.ton))
            return
        receiver = message.destination.number
        provider_id = None
        if isinstance(reference, int):
            # The phone's message reference: the same for a redelivery of this deliver_sm. It is
            # a small counter that wraps, so it only names a message within a day (a redelivery
            # comes within minutes); the day is part of the id, or a month later the same
            # reference would be dropped as a duplicate.
            day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
            digest = hashlib.sha256(f"{sender}|{receiver}|{reference}|{day}".encode()).hexdigest()[:20]
            provider_id = f"smpp-mr-{digest}"
        await self._sink.incoming(
            IncomingSms(transport=self.name, sender=sender, receiver=receiver, text=text, provider_id=provider_id)
        )
