"""The gateway against a real Kannel (bearerbox + smsbox + fakesmsc from Debian) on loopback.

Outbound: outbox -> dispatcher -> smsbox sendsms -> fakesmsc (the "phone"), in GSM-7 and in
UCS-2, with delivery reports coming back through our dlr-url. Inbound: a text injected at
fakesmsc -> smsbox sms-service -> /sms/kannel/inbound -> keyword router -> reply through the
outbox -> fakesmsc.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.app import OUTBOX, create_app
from gateway.outbox import Outbox
from models.entities import Dossier, DossierStatus, OutboundSms, SmsKind, SmsStatus
from models.seed import DEMO_PHONE, seed
from tests.peers.kannel import KannelPeer

GET_URL = "/sms/kannel/inbound?from=%p&to=%P&text=%a&id=%I"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def gateway_with_kannel(aiohttp_server, settings, clock):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with KannelPeer(base, get_url=GET_URL, reply_mode="none") as kannel:
        kannel_settings = settings.replace(
            sms={"transport": "kannel", "public_base_url": base, "idle_poll_seconds": 0.1, "sender": "8088"},
            kannel={"sendsms_url": kannel.sendsms_url, "username": kannel.username, "password": kannel.password},
        )
        server = await aiohttp_server(create_app(kannel_settings), port=port)
        await seed(now=clock.now)
        yield server, kannel, kannel_settings


async def wait_for(predicate, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_outbound_sms_reach_the_phone_in_both_encodings_with_delivery_reports(gateway_with_kannel):
    server, kannel, settings = gateway_with_kannel
    plain = await server.app[OUTBOX].enqueue(DEMO_PHONE, "Hồ sơ của bạn đã được xử lý xong", SmsKind.INFO, urgent=True)
    unicode_outbox = Outbox(settings.replace(sms={"encoding_policy": "unicode"}))
    long_text = "Kết quả hồ sơ đăng ký khai sinh đã có. Mời ông/bà đến Bộ phận Một cửa nhận kết quả, mang giấy hẹn và CCCD."
    accented = await unicode_outbox.enqueue(DEMO_PHONE, long_text, SmsKind.INFO, urgent=True)
    unicode_outbox.wakeup.set()
    server.app[OUTBOX].wakeup.set()
    received = await kannel.received(count=2, timeout=20)
    by_text = {m.text: m for m in received}
    assert "Ho so cua ban da duoc xu ly xong" in by_text
    assert by_text["Ho so cua ban da duoc xu ly xong"].coding == "gsm"
    assert long_text in by_text and by_text[long_text].coding == "ucs2"
    assert accented.parts == 2 and len(by_text[long_text].parts) == 2
    assert all(m.receiver.endswith("84987542228") for m in received)

    async def delivered():
        rows = await OutboundSms.filter(id__in=[plain.id, accented.id])
        return all(r.status is SmsStatus.DELIVERED for r in rows)

    await wait_for(delivered)
    rows = await OutboundSms.filter(id__in=[plain.id, accented.id])
    assert all(r.transport == "kannel" and r.delivered_at is not None for r in rows)


async def test_a_text_from_a_phone_gets_its_answer_back_through_kannel(gateway_with_kannel):
    server, kannel, settings = gateway_with_kannel
    dossier = await Dossier.filter(status=DossierStatus.PROCESSING, applicant_phone=DEMO_PHONE).first()
    await kannel.inject_mo("84987542228", "8088", f"hs {dossier.code.lower()}")
    [reply] = await kannel.received(count=1, timeout=20)
    assert reply.text.startswith(f"Ho so {dossier.code}:")
    assert "Trang thai: Dang xu ly." in reply.text
    assert reply.receiver.endswith("84987542228")

    # A phone typing Vietnamese sends UCS-2; the keyword still reads.
    await kannel.inject_mo("84987542228", "8088", "Hủy")
    replies = await kannel.received(count=2, timeout=20)
    assert replies[-1].text.startswith("Da ngung tin bao")
