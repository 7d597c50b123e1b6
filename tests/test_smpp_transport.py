"""SmppTransport against a real SMPP 3.4 SMSC on 127.0.0.1.

The SMSC is smpp34's Rust server (tests/peers/smsc.py): in this event loop when the
test scripts it (answers, receipts, MOs), in a child process when the test kills,
restarts or freezes it. Every check looks at what reached the SMSC or the sink.
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
import smpp34
import structlog

from gateway.providers import smpp as smpp_module
from gateway.providers.smpp import DLR_STATES, SmppTransport
from gateway.settings import SmppSettings
from gateway.sms import DeliveryReport, DeliveryState, IncomingSms, OutgoingSms, SendOutcome
from models.sms_text import Encoding, split_parts
from tests.peers.smsc import SmscPeer, SmscProcess, concat_parts_text, free_port
from tests.waiting import eventually
from tests.waiting import eventually as wait_until

PHONE = "+84987542228"
LONG_VI = (
    "Hồ sơ của bạn đã được xử lý xong. Mời ông/bà mang căn cước công dân và giấy hẹn đến bộ phận "
    "một cửa của Ủy ban nhân dân xã để nhận kết quả. Khi đến, vui lòng lấy số thứ tự tại quầy tiếp "
    "nhận. Mọi thắc mắc xin liên hệ cán bộ tiếp nhận. Xin cảm ơn!"
)
SHORT_GSM = "Ho so HS-0042 da xu ly xong @ 100% {UBND xa} - moi nhan ket qua."


class Sink:
    def __init__(self) -> None:
        self.messages: list[IncomingSms] = []
        self.reports: list[DeliveryReport] = []

    async def incoming(self, message: IncomingSms) -> None:
        self.messages.append(message)

    async def report(self, report: DeliveryReport) -> None:
        self.reports.append(report)

    async def wait(self, predicate, timeout: float = 3.0, what: str = "sink") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)


def sms(text: str, encoding: Encoding = Encoding.GSM7, *, id: int = 1, to: str = PHONE) -> OutgoingSms:
    return OutgoingSms(id=id, to=to, text=text, encoding=encoding, parts=len(split_parts(text, encoding)))


@pytest.fixture
async def smsc():
    async with SmscPeer() as peer:
        yield peer


@pytest.fixture
async def make_transport():
    made: list[SmppTransport] = []

    async def make(port: int, *, sink: Sink | None = None, response_timeout: float = 2.0, **settings) -> SmppTransport:
        values = dict(host="127.0.0.1", port=port, system_id="gateway", password="secret", source_addr="8088",
                      window=10, enquire_link_seconds=30, reconnect_seconds=1)
        values.update(settings)
        transport = SmppTransport(SmppSettings(**values), sink or Sink(), response_timeout=response_timeout)
        made.append(transport)
        await transport.start()
        return transport

    yield make
    for transport in made:
        await asyncio.wait_for(transport.close(), 10)


# -- outbound ---------------------------------------------------------------------------


async def test_binds_as_transceiver_and_submits_short_gsm7(smsc, make_transport):
    transport = await make_transport(smsc.port)
    assert transport.bound
    session = await smsc.wait_bound()
    assert session.system_id == "gateway"
    assert session.can_receive  # transceiver: the SMSC may push deliver_sm on this session

    result = await transport.send(sms(SHORT_GSM))

    assert result.outcome is SendOutcome.SENT, result
    [submit] = smsc.submits
    assert result.provider_id == submit.message_id and submit.status == smpp34.ESME_ROK
    assert (submit.destination_addr, submit.dest_addr_ton, submit.dest_addr_npi) == ("84987542228", 1, 1)
    assert submit.source_addr == "8088"
    assert submit.data_coding == 0 and submit.esm_class == 0 and submit.udh() is None
    assert submit.registered_delivery == 1
    assert submit.text() == SHORT_GSM  # '@', '{', '}' as GSM 03.38 (the last two escaped)


async def test_long_vietnamese_ucs2_goes_as_four_concatenated_parts(smsc, make_transport):
    transport = await make_transport(smsc.port)
    assert len(split_parts(LONG_VI, Encoding.UCS2)) == 4

    result = await transport.send(sms(LONG_VI, Encoding.UCS2))

    assert result.outcome is SendOutcome.SENT, result
    submits = await smsc.wait_submits(4)
    assert len(smsc.submits) == 4
    assert result.provider_id == submits[0].message_id  # the first part's id
    assert all(s.data_coding == 8 and s.esm_class & 0x40 for s in submits)
    assert all(len(s.short_message) <= 140 for s in submits)
    references = {s.udh()[0] for s in submits}
    assert len(references) == 1
    assert [s.udh()[1:] for s in submits] == [(4, 1), (4, 2), (4, 3), (4, 4)]
    assert concat_parts_text(submits) == LONG_VI


async def test_long_gsm7_is_split_by_septets_not_characters(smsc, make_transport):
    # aiosmpplib's own splitter counts characters: 100 x '€' (200 septets) would go in one
    # 200-octet part. We split like models.sms_text: 76 + 24 euro signs.
    transport = await make_transport(smsc.port)
    text = "€" * 100

    result = await transport.send(sms(text))

    assert result.outcome is SendOutcome.SENT, result
    submits = await smsc.wait_submits(2)
    assert [len(s.body()) for s in submits] == [152, 48]
    assert [s.udh()[1:] for s in submits] == [(2, 1), (2, 2)]
    assert concat_parts_text(submits) == text


@pytest.mark.parametrize(
    ("status", "outcome", "error"),
    [
        (smpp34.ESME_RTHROTTLED, SendOutcome.THROTTLED, "ESME_RTHROTTLED"),
        (smpp34.ESME_RMSGQFUL, SendOutcome.RETRY, "ESME_RMSGQFUL"),
        (smpp34.ESME_RSYSERR, SendOutcome.RETRY, "ESME_RSYSERR"),
        (smpp34.ESME_RINVDSTADR, SendOutcome.FAILED, "ESME_RINVDSTADR"),
        (smpp34.ESME_RINVSRCADR, SendOutcome.FAILED, "ESME_RINVSRCADR"),
    ],
)
async def test_submit_sm_resp_status_decides_the_outcome(smsc, make_transport, status, outcome, error):
    transport = await make_transport(smsc.port)
    smsc.status_for = lambda submit: status

    result = await transport.send(sms("Xin chao"))

    assert result.outcome is outcome
    assert error in result.error and result.provider_id is None
    assert transport.bound  # an error answer does not touch the session
    smsc.status_for = lambda submit: smpp34.ESME_ROK
    assert (await transport.send(sms("Xin chao"))).outcome is SendOutcome.SENT


async def test_throttled_part_stops_the_rest_of_the_message(smsc, make_transport):
    transport = await make_transport(smsc.port)
    smsc.status_for = lambda submit: (smpp34.ESME_RTHROTTLED if (submit.udh() or (0, 1, 1))[2] == 2
                                      else smpp34.ESME_ROK)

    result = await transport.send(sms(LONG_VI, Encoding.UCS2))

    assert result.outcome is SendOutcome.THROTTLED
    assert "part 2 of 4" in result.error
    # One session, in order: a message sent now reaches the SMSC after anything still queued,
    # so once it is in, parts 3 and 4 would be too.
    assert (await transport.send(sms("Sau", id=2))).outcome is SendOutcome.SENT
    await smsc.wait_submits(3)
    assert [s.udh() and s.udh()[1:] for s in smsc.submits] == [(4, 1), (4, 2), None]  # parts 3, 4 never went out


async def test_window_caps_outstanding_submits_across_concurrent_sends(smsc, make_transport):
    transport = await make_transport(smsc.port, window=3)
    smsc.response_delay = 0.05  # the SMSC holds each answer, so submits pile up
    messages = [sms(LONG_VI if i % 3 == 0 else f"Tin nhan {i}", Encoding.UCS2 if i % 3 == 0 else Encoding.GSM7, id=i)
                for i in range(12)]

    results = await asyncio.wait_for(asyncio.gather(*(transport.send(m) for m in messages)), 10)

    assert all(r.outcome is SendOutcome.SENT for r in results), results
    assert len(smsc.submits) == 8 + 4 * 4
    assert smsc.max_outstanding == 3  # reached, never passed


async def test_no_submit_sm_resp_in_time_is_retry_and_the_late_answer_is_ignored(smsc, make_transport):
    transport = await make_transport(smsc.port, response_timeout=0.3)
    smsc.response_delay = 0.8

    result = await transport.send(sms("Cham"))
    assert result.outcome is SendOutcome.RETRY and "submit_sm_resp" in result.error

    smsc.response_delay = 0
    await smsc.wait_for(lambda: smsc.outstanding == 0, 2, "the late answer")
    again = await transport.send(sms("Nhanh"))
    assert again.outcome is SendOutcome.SENT and again.provider_id == smsc.submits[-1].message_id


async def test_invalid_destination_fails_without_a_submit(smsc, make_transport):
    transport = await make_transport(smsc.port)

    result = await transport.send(sms("Xin chao", to="+84-abc"))

    assert result.outcome is SendOutcome.FAILED and "destination" in result.error
    assert smsc.submits == []


# -- inbound ----------------------------------------------------------------------------

EXPECTED_STATES = [
    ("DELIVRD", DeliveryState.DELIVERED),
    ("ACCEPTD", DeliveryState.SENT),
    ("ENROUTE", DeliveryState.SENT),
    ("UNDELIV", DeliveryState.FAILED),
    ("EXPIRED", DeliveryState.FAILED),
    ("REJECTD", DeliveryState.FAILED),
    ("DELETED", DeliveryState.FAILED),
    ("UNKNOWN", DeliveryState.FAILED),
]


async def test_delivery_receipt_reaches_the_sink_as_delivered(smsc, make_transport):
    sink = Sink()
    transport = await make_transport(smsc.port, sink=sink)
    result = await transport.send(sms(SHORT_GSM))

    status = await smsc.receipt(result.provider_id, "DELIVRD")

    assert status == smpp34.ESME_ROK  # the deliver_sm was acknowledged
    await sink.wait(lambda: sink.reports, what="receipt")
    assert sink.reports == [DeliveryReport(state=DeliveryState.DELIVERED, provider_id=result.provider_id,
                                           reason="DELIVRD")]
    assert sink.messages == []


async def test_every_receipt_stat_maps_to_its_state(smsc, make_transport):
    assert set(DLR_STATES) == {stat for stat, _ in EXPECTED_STATES}
    sink = Sink()
    await make_transport(smsc.port, sink=sink)

    for number, (stat, _state) in enumerate(EXPECTED_STATES):
        await smsc.receipt(f"m{number}", stat, err="000" if stat == "DELIVRD" else "011")

    await sink.wait(lambda: len(sink.reports) == len(EXPECTED_STATES), what="receipts")
    assert [(r.provider_id, r.state) for r in sink.reports] == [
        (f"m{number}", state) for number, (_stat, state) in enumerate(EXPECTED_STATES)
    ]
    assert sink.reports[0].reason == "DELIVRD" and sink.reports[3].reason == "UNDELIV err:011"


async def test_receipt_variants_seen_in_the_wild(smsc, make_transport):
    sink = Sink()
    transport = await make_transport(smsc.port, sink=sink)

    # 1. Dates with seconds: aiosmpplib's own receipt parser raises on them (and dropped the session).
    await smsc.receipt("sec-1", "DELIVRD", submit_date="250101120000", done_date="250101120105")
    # 2. No text, only TLVs: receipted_message_id + message_state 5 (UNDELIVERABLE).
    await smsc.deliver(source="84987542228", destination="8088", body=b"", esm_class=0x04, tlvs=[
        smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"tlv-2\x00"),
        smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([5])),
    ])
    # 3. A receipt text on a deliver_sm without the receipt bit in esm_class.
    await smsc.receipt("plain-3", "EXPIRED", esm_class=0)
    # 4. The TLV wins over the text's id (some SMSCs write the id in another base there).
    await smsc.receipt("1234", "DELIVRD", tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"4D2\x00")])

    await sink.wait(lambda: len(sink.reports) == 4, what="4 receipts")
    assert [(r.provider_id, r.state) for r in sink.reports] == [
        ("sec-1", DeliveryState.DELIVERED),
        ("tlv-2", DeliveryState.FAILED),
        ("plain-3", DeliveryState.FAILED),
        ("4D2", DeliveryState.DELIVERED),
    ]
    assert sink.messages == []
    assert transport.bound and transport.binds == 1  # the session never dropped


async def test_receipts_of_later_parts_only_count_when_they_fail(smsc, make_transport):
    sink = Sink()
    transport = await make_transport(smsc.port, sink=sink)
    result = await transport.send(sms(LONG_VI, Encoding.UCS2))
    first, second, third, _fourth = (s.message_id for s in smsc.submits)

    await smsc.receipt(second, "DELIVRD")
    await smsc.receipt(first, "DELIVRD")
    await smsc.receipt(third, "UNDELIV", err="001")

    await sink.wait(lambda: len(sink.reports) == 2, what="2 receipts")
    assert result.provider_id == first
    assert [(r.provider_id, r.state) for r in sink.reports] == [
        (first, DeliveryState.DELIVERED),
        (first, DeliveryState.FAILED),
    ]
    assert "err:001" in sink.reports[1].reason


async def test_mobile_originated_messages_reach_the_sink(smsc, make_transport):
    sink = Sink()
    await make_transport(smsc.port, sink=sink)

    # UCS-2 from a national-format number, GSM-7 from an international one.
    await smsc.deliver(source="0987542228", destination="8088", text="Tra cứu hồ sơ HS-0042 giúp tôi", source_ton=2)
    await smsc.deliver(source="84987542228", destination="8088", text="DK HS@UBND {1}")

    await sink.wait(lambda: len(sink.messages) == 2, what="2 MOs")
    first, second = sink.messages
    assert (first.transport, first.sender, first.receiver, first.text) == (
        "smpp", PHONE, "8088", "Tra cứu hồ sơ HS-0042 giúp tôi")
    assert (second.sender, second.receiver, second.text) == (PHONE, "8088", "DK HS@UBND {1}")
    assert sink.reports == []


async def test_concatenated_mo_is_joined_and_a_redelivery_keeps_its_id(smsc, make_transport):
    sink = Sink()
    await make_transport(smsc.port, sink=sink)
    halves = ["Tôi muốn hỏi về hồ sơ đăng ký khai sinh cho con, ", "đã nộp tuần trước tại xã."]
    thirds = ["Xin hỏi lịch tiếp ", "công dân tuần này ", "ở xã ạ?"]
    mr = [smpp34.Tlv(smpp34.TLV_USER_MESSAGE_REFERENCE, (7).to_bytes(2, "big"))]

    # Two concatenated MOs interleaved: 8-bit reference 0x2A (IEI 0x00) in 2 parts, and
    # 16-bit reference 0x1234 (IEI 0x08) in 3 parts, out of order.
    def eight(number: int) -> bytes:
        return bytes([5, 0x00, 3, 0x2A, 2, number]) + halves[number - 1].encode("utf-16-be")

    def sixteen(number: int) -> bytes:
        return bytes([6, 0x08, 4, 0x12, 0x34, 3, number]) + thirds[number - 1].encode("utf-16-be")

    for source, body in [("0987542228", sixteen(2)), ("84987542228", eight(1)), ("0987542228", sixteen(3)),
                         ("84987542228", eight(2)), ("0987542228", sixteen(1))]:
        await smsc.deliver(source=source, destination="8088", body=body, data_coding=8, esm_class=0x40,
                           tlvs=mr if body[1] == 0x00 else None)
    # A deliver_sm with the same sender and message reference (what a redelivery carries).
    await smsc.deliver(source="84987542228", destination="8088", text="Cam on", tlvs=mr)

    await sink.wait(lambda: len(sink.messages) == 3, what="3 MOs")
    by_8bit_ref, by_16bit_ref, same_reference = sink.messages
    assert by_8bit_ref.text == "".join(halves) and by_8bit_ref.sender == PHONE
    assert by_16bit_ref.text == "".join(thirds) and by_16bit_ref.sender == PHONE
    assert by_8bit_ref.provider_id and by_8bit_ref.provider_id == same_reference.provider_id
    assert by_16bit_ref.provider_id is None  # no message reference: nothing stable to offer


async def test_nothing_personal_is_logged(smsc, make_transport):
    sink = Sink()
    with structlog.testing.capture_logs() as logs:
        transport = await make_transport(smsc.port, sink=sink)
        smsc.status_for = lambda submit: smpp34.ESME_RINVDSTADR
        assert (await transport.send(sms(SHORT_GSM, id=5))).outcome is SendOutcome.FAILED
        await smsc.deliver(source="0987542228", destination="8088", text="Bí mật riêng tư")
        await smsc.deliver(source="abc", destination="8088", text="Bí mật riêng tư", source_ton=5)
        await sink.wait(lambda: sink.messages, what="MO")
        await transport.close()
    logged = repr(logs)
    assert "smpp_submit_not_sent" in logged and "smpp_mo_unusable_sender" in logged  # the check saw logs
    for secret in ("987542228", "Bí mật", "HS-0042"):
        assert secret not in logged


# -- session ----------------------------------------------------------------------------


async def test_reconnects_after_the_smsc_restarts(make_transport):
    async with SmscProcess() as process:
        transport = await make_transport(process.port, reconnect_seconds=1)
        assert transport.bound
        before = await transport.send(sms("Truoc"))
        assert before.outcome is SendOutcome.SENT

        await process.kill()  # the SMSC crashes: its end of the TCP session closes
        await wait_until(lambda: not transport.bound, 2, "the drop to be seen")
        during = await transport.send(sms("Trong luc mat ket noi"))
        assert during.outcome is SendOutcome.RETRY, during

        await process.start()  # same port
        await wait_until(lambda: transport.bound, 4, "the rebind")
        after = await transport.send(sms("Sau khi khoi dong lai"))

        assert after.outcome is SendOutcome.SENT, after
        await wait_until(lambda: len(process.submits) == 2, 2, "the submit in the new SMSC")
        assert [s["message_id"] for s in process.submits] == [before.provider_id, after.provider_id]
        assert after.provider_id != before.provider_id  # a new SMSC process answered
        assert transport.binds == 2 and process.binds == 2


async def test_submit_in_flight_when_the_smsc_unbinds_is_retry_at_once(smsc, make_transport):
    transport = await make_transport(smsc.port, response_timeout=5.0, reconnect_seconds=1)
    smsc.response_delay = 5  # the SMSC sits on the submit...
    sending = asyncio.create_task(transport.send(sms("Dang gui")))
    await smsc.wait_submits(1)

    started = time.monotonic()
    await smsc.disconnect_all()  # ...and unbinds the session (an orderly SMSC shutdown)
    result = await asyncio.wait_for(sending, 3)

    assert result.outcome is SendOutcome.RETRY and "lost" in result.error
    assert time.monotonic() - started < 2.0  # not the 5 s response timeout
    smsc.response_delay = 0
    await wait_until(lambda: transport.bound, 3, "the rebind")
    assert (await transport.send(sms("Lai"))).outcome is SendOutcome.SENT
    assert transport.binds == 2


async def test_a_hung_smsc_is_found_by_enquire_link_and_left(make_transport):
    async with SmscProcess() as process:
        transport = await make_transport(process.port, enquire_link_seconds=1, reconnect_seconds=1,
                                         response_timeout=1.0)
        process.freeze()  # TCP stays up, nothing answers

        during = await transport.send(sms("Treo"))
        assert during.outcome is SendOutcome.RETRY and "submit_sm_resp" in during.error
        # idle 1 s -> enquire_link, no answer within 1 s -> the session is dropped
        await wait_until(lambda: not transport.bound, 4, "enquire_link to give up")
        assert transport.enquire_links_sent >= 1

        process.thaw()
        await wait_until(lambda: transport.bound, 5, "the rebind")
        assert (await transport.send(sms("Lai hoat dong"))).outcome is SendOutcome.SENT


async def test_smsc_down_at_start_is_retry_not_an_exception(make_transport):
    port = free_port()  # nobody listens here
    transport = await make_transport(port)
    assert not transport.bound
    assert (await transport.send(sms("Xin chao"))).outcome is SendOutcome.RETRY

    async with SmscPeer(port=port) as late:  # the SMSC comes up later: bound within reconnect_seconds
        await wait_until(lambda: transport.bound, 3, "the late bind")
        assert (await transport.send(sms("Xin chao"))).outcome is SendOutcome.SENT
        assert len(late.submits) == 1
        await transport.close()


async def test_close_unbinds_and_later_sends_are_retry(smsc, make_transport):
    transport = await make_transport(smsc.port)
    session = await smsc.wait_bound()

    started = time.monotonic()
    await transport.close()

    assert time.monotonic() - started < 1.0
    assert transport.unbinds_sent == 1
    await smsc.wait_for(lambda: session.session_id in smsc.unbound, 2, "the session to end")
    assert not transport.bound
    assert (await transport.send(sms("Xin chao"))).outcome is SendOutcome.RETRY


async def test_vendor_status_does_not_break_the_session():
    # smpp34 cannot send a status outside SMPP 3.4 (it answers ESME_RSYSERR instead), so this
    # feeds the ESME's PDU reader directly: a submit_sm_resp built by aiosmpplib, status 0x401.
    from aiosmpplib import SmppCommandStatus, SubmitSmResp

    pdu = bytearray(SubmitSmResp(sequence_num=9, message_id="").pdu())
    pdu[8:12] = struct.pack("!I", 0x401)
    transport = SmppTransport(SmppSettings(), Sink())
    reader = asyncio.StreamReader()
    reader.feed_data(bytes(pdu))
    transport._esme._reader = reader

    raw, header = await transport._esme._get_pdu()

    assert header.command_status is SmppCommandStatus.ESME_RUNKNOWNERR and header.sequence_num == 9
    response = SubmitSmResp.from_pdu(raw, header)
    result = transport._result_of(response, transport._esme.vendor_statuses.pop(9))
    assert result.outcome is SendOutcome.RETRY and "0x00000401" in result.error
    assert smpp_module.SmppCommandStatus(header.command_status)  # still a valid library status


# -- inside the real app ----------------------------------------------------------------
# gateway.app.create_app with sms.transport = "smpp" bound to the real SMSC: the outbox's
# dispatcher sends through it, receipts update the rows, MOs reach the keyword router.


def smpp_app_settings(settings, smsc_port: int, **sms):
    return settings.replace(
        sms={"transport": "smpp", **sms},
        smpp={"host": "127.0.0.1", "port": smsc_port, "system_id": "gateway", "password": "secret",
              "source_addr": "8088", "reconnect_seconds": 1},
    )


async def row_in(row_id: int, *statuses):
    from models.entities import OutboundSms

    row = await OutboundSms.get(id=row_id)
    return row if row.status in statuses else None


async def test_app_sends_the_outbox_through_smpp_and_receipts_settle_the_rows(smsc, make_client, settings):
    from gateway.app import OUTBOX, TRANSPORT
    from models.entities import OutboundSms, SmsKind, SmsStatus

    client = await make_client(smpp_app_settings(settings, smsc.port, encoding_policy="unicode"))
    assert client.app[TRANSPORT].name == "smpp" and client.app[TRANSPORT].bound
    outbox = client.app[OUTBOX]

    short = await outbox.enqueue(PHONE, SHORT_GSM, SmsKind.INFO, urgent=True)
    [submit] = await smsc.wait_submits(1)
    assert (submit.destination_addr, submit.source_addr, submit.data_coding) == ("84987542228", "8088", 0)
    assert submit.text() == SHORT_GSM and submit.registered_delivery == 1
    sent = await eventually(lambda: row_in(short.id, SmsStatus.SENT), 5, "the row marked sent")
    assert (sent.transport, sent.provider_id, sent.attempts) == ("smpp", submit.message_id, 1)

    assert await smsc.receipt(submit.message_id, "DELIVRD") == smpp34.ESME_ROK
    delivered = await eventually(lambda: row_in(short.id, SmsStatus.DELIVERED), 5, "the receipt to mark it delivered")
    assert delivered.delivered_at is not None

    # Vietnamese with diacritics under the "unicode" policy: UCS-2, concatenated parts.
    long = await OutboundSms.get(id=(await outbox.enqueue(PHONE, LONG_VI, SmsKind.INFO, urgent=True)).id)
    assert long.encoding == "ucs2" and long.parts > 1
    parts = (await smsc.wait_submits(1 + long.parts))[1:]
    assert all(s.data_coding == 8 and s.destination_addr == "84987542228" for s in parts)
    assert [s.udh()[1:] for s in parts] == [(long.parts, n) for n in range(1, long.parts + 1)]
    assert concat_parts_text(parts) == long.text
    sent = await eventually(lambda: row_in(long.id, SmsStatus.SENT), 5, "the long message marked sent")
    assert sent.provider_id == parts[0].message_id  # the first part's id

    await smsc.receipt(parts[0].message_id, "UNDELIV", err="011")
    failed = await eventually(lambda: row_in(long.id, SmsStatus.FAILED), 5, "the failed receipt")
    assert "UNDELIV" in failed.last_error and "011" in failed.last_error
    assert (await OutboundSms.get(id=short.id)).status is SmsStatus.DELIVERED  # the other row untouched


def messages_to(smsc, destination: str = "84987542228") -> list[list]:
    """Complete messages the SMSC received for ``destination``: each a list of its parts."""
    messages: list[list] = []
    open_parts: dict[int, list] = {}
    for submit in smsc.submits:
        if submit.destination_addr != destination:
            continue
        udh = submit.udh()
        if udh is None:
            messages.append([submit])
            continue
        parts = open_parts.setdefault(udh[0], [])
        parts.append(submit)
        if len(parts) == udh[1]:
            messages.append(sorted(open_parts.pop(udh[0]), key=lambda s: s.udh()[2]))
    return messages


async def reply_to(smsc, count: int, what: str) -> tuple[str, list]:
    """The ``count``-th complete message to the citizen at the SMSC: (text, parts)."""
    await smsc.wait_for(lambda: len(messages_to(smsc)) >= count, 5, what)
    parts = messages_to(smsc)[count - 1]
    return concat_parts_text(parts), parts


async def test_mo_keywords_from_the_smsc_reach_the_router_and_the_reply_goes_back(smsc, make_client, settings):
    from models.entities import Dossier, DossierStatus, InboundSms, OutboundSms, SmsKind, SmsStatus
    from models.seed import DEMO_PHONE

    await make_client(smpp_app_settings(settings, smsc.port))

    # "TG" (help), GSM-7 from an international-format number.
    assert await smsc.deliver(source="84987542228", destination="8088", text="TG") == smpp34.ESME_ROK
    help_text, help_parts = await reply_to(smsc, 1, "the reply to TG")
    assert all(s.source_addr == "8088" and s.data_coding == 0 for s in help_parts)
    assert help_text.startswith("DVC UBND xa Phuong Ky: HS <ma ho so> tra cuu ho so"), help_text

    # "Tra cứu hồ sơ <code>" typed with diacritics on a handset: UCS-2 (data_coding 8).
    dossier = await Dossier.filter(code__startswith="000.32.22.H23-", status=DossierStatus.READY,
                                   applicant_phone=DEMO_PHONE).first()
    assert dossier is not None
    text = f"Tra cứu hồ sơ {dossier.code}"
    status = await smsc.deliver(source="0987542228", destination="8088", body=text.encode("utf-16-be"),
                                data_coding=8, source_ton=2)
    assert status == smpp34.ESME_ROK
    status_text, status_parts = await reply_to(smsc, 2, "the reply to the UCS-2 lookup")
    assert status_text.startswith(f"Ho so {dossier.code}:"), status_text
    assert f"Nguoi nop: {dossier.applicant_name}." in status_text  # the applicant's own phone

    inbound = await InboundSms.all().order_by("id")
    assert [(m.transport, m.keyword) for m in inbound] == [("smpp", "help"), ("smpp", "status")]
    async def both_marked_sent():
        # The SMSC can hold a message before the dispatcher's batched mark is written.
        replies = await OutboundSms.filter(kind=SmsKind.REPLY, status=SmsStatus.SENT).order_by("id")
        return replies if len(replies) >= 2 else None

    replies = await eventually(both_marked_sent, 5, "both replies marked sent")
    assert [(r.to_phone, r.transport, r.provider_id, r.parts) for r in replies] == [
        (PHONE, "smpp", help_parts[0].message_id, len(help_parts)),
        (PHONE, "smpp", status_parts[0].message_id, len(status_parts)),
    ]
    assert [r.text for r in replies] == [help_text, status_text]
