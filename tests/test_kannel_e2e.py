"""The gateway against a real Kannel (bearerbox + smsbox + fakesmsc from Debian) on loopback.

Outbound: outbox -> dispatcher -> smsbox sendsms -> fakesmsc (the "phone"), in GSM-7 and in
UCS-2, with delivery reports coming back through our dlr-url. Inbound: a text injected at
fakesmsc -> smsbox sms-service -> /sms/kannel/inbound -> keyword router -> reply through the
outbox -> fakesmsc.

Kannel runs the production configuration as the README gives it: its Kannel block (read
from README.md, get-url verbatim, smsbox's default ``mo-recode = false``) with the webhook
token set, so a handset's UCS-2 text reaches the gateway as raw UTF-16BE bytes and every
callback, delivery reports included, must carry the token.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from gateway.app import OUTBOX, create_app
from gateway.outbox import Outbox
from gateway.settings import from_mapping
from models.entities import Dossier, DossierStatus, OutboundSms, SmsKind, SmsStatus
from models.seed import DEMO_PHONE, seed
from tests.peers.kannel import KannelPeer
from tests.waiting import eventually
from tests.servers import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
# Not only letters and digits: the README's rule for writing it into Kannel's URLs (and the
# gateway's own dlr-url) is exercised.
TOKEN = "e2e+T0k/en%é"
GATEWAY_PLACEHOLDER = "http://GATEWAY"
TOKEN_PLACEHOLDER = "<GATEWAY_WEBHOOK_TOKEN>"


def parse_kannel_conf(text: str) -> list[tuple[str, dict[str, str]]]:
    """A Kannel config as [(group, {key: value})], values unquoted."""
    groups: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Kannel config line: {line!r}"
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "group":
            groups.append((value, {}))
        else:
            assert groups, f"{key} outside a group"
            groups[-1][1][key] = value
    return groups


def readme_kannel_config() -> list[tuple[str, dict[str, str]]]:
    """The fenced Kannel configuration block of the README's **Kannel.** paragraph."""
    text = README.read_text(encoding="utf-8")
    assert "**Kannel.**" in text, "README.md has no **Kannel.** paragraph"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text[text.index("**Kannel.**"):], re.M | re.S)
    block = next((b for b in blocks if "group = sms-service" in b), None)
    assert block is not None, "no Kannel configuration block after the README's **Kannel.** paragraph"
    return parse_kannel_conf(block)


def readme_group(config, name: str) -> dict[str, str]:
    [values] = [values for group, values in config if group == name]
    return values


def for_this_run(value: str, base: str) -> str:
    """A README value with the gateway's base URL and the token as the README says to write it."""
    return value.replace(GATEWAY_PLACEHOLDER, base).replace(TOKEN_PLACEHOLDER, quote(TOKEN, safe="").replace("%", "%%"))


@pytest.fixture
async def gateway_with_kannel(aiohttp_server, database_url, clock):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = readme_kannel_config()
    service = readme_group(config, "sms-service")
    get_url = service["get-url"]
    assert get_url.startswith(GATEWAY_PLACEHOLDER + "/sms/kannel/inbound?") and TOKEN_PLACEHOLDER in get_url, get_url
    assert service.get("max-messages") == "0", "the gateway replies through sendsms, not in the answer body"
    mo_recode = readme_group(config, "smsbox").get("mo-recode", "false")  # smsbox's default
    assert mo_recode == "false", "the tests run smsbox's default, the hard case"
    async with KannelPeer(base, get_url=for_this_run(get_url, base), reply_mode="none", mo_recode=False) as kannel:
        # Everything the README configures is what this Kannel runs.
        running = parse_kannel_conf((kannel.workdir / "kannel.conf").read_text())
        for group, values in config:
            wanted = {key: for_this_run(value, base) for key, value in values.items()}
            assert any(name == group and wanted.items() <= got.items() for name, got in running), (
                f"README's [{group}] {wanted} is not what the tested Kannel runs: {running}")
        settings = from_mapping(
            {
                "database": {"url": database_url},
                "logging": {"format": "json"},
                "sms": {"transport": "kannel", "public_base_url": base, "idle_poll_seconds": 0.1, "sender": "8088"},
                "kannel": {"sendsms_url": kannel.sendsms_url, "username": kannel.username},
            },
            environ={"GATEWAY_SECRET_KEY": "test-secret", "GATEWAY_WEBHOOK_TOKEN": TOKEN,
                     "GATEWAY_KANNEL_PASSWORD": kannel.password},
        )
        assert settings.security.webhook_token == TOKEN
        app = create_app(settings)
        inbound_queries: list[str] = []

        @web.middleware
        async def record_inbound(request: web.Request, handler):
            if request.path == "/sms/kannel/inbound":
                inbound_queries.append(request.rel_url.raw_query_string)
            return await handler(request)

        app.middlewares.append(record_inbound)
        server = await aiohttp_server(app, port=port)
        await seed(now=clock.now)
        yield server, kannel, settings, inbound_queries


async def test_outbound_sms_reach_the_phone_in_both_encodings_with_delivery_reports(gateway_with_kannel):
    server, kannel, settings, _ = gateway_with_kannel
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

    # The webhook token is enforced, so these reports came through dlr-urls that carry it.
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/sms/kannel/dlr"), params={"id": str(plain.id), "type": "1"}) as response:
            assert response.status == 401
    await eventually(delivered, 15, "Kannel's delivery reports to mark both messages delivered")
    rows = await OutboundSms.filter(id__in=[plain.id, accented.id])
    assert all(r.transport == "kannel" and r.delivered_at is not None for r in rows)


async def test_a_text_from_a_phone_gets_its_answer_back_through_kannel(gateway_with_kannel):
    server, kannel, settings, inbound_queries = gateway_with_kannel
    dossier = await Dossier.filter(status=DossierStatus.PROCESSING, applicant_phone=DEMO_PHONE).first()
    await kannel.inject_mo("84987542228", "8088", f"hs {dossier.code.lower()}")
    [reply] = await kannel.received(count=1, timeout=20)
    assert reply.text.startswith(f"Ho so {dossier.code}:")
    assert "Trang thai: Dang xu ly." in reply.text
    assert reply.receiver.endswith("84987542228")

    # Typed with diacritics on a handset: UCS-2 at the SMSC, raw UTF-16BE bytes in the get-url.
    await kannel.inject_mo("84987542228", "8088", f"Tra cứu hồ sơ {dossier.code}", coding="ucs2")
    replies = await kannel.received(count=2, timeout=20)
    assert replies[-1].text.startswith(f"Ho so {dossier.code}:"), replies[-1].text
    assert "Trang thai: Dang xu ly." in replies[-1].text
    ucs2_query = inbound_queries[-1]
    assert "text=%00T%00r%00a" in ucs2_query, ucs2_query
    assert "coding=2" in ucs2_query and "charset=UTF-16BE" in ucs2_query, ucs2_query

    await kannel.inject_mo("84987542228", "8088", "Hủy")
    replies = await kannel.received(count=3, timeout=20)
    assert replies[-1].text.startswith("Da ngung tin bao")

    # Without the token nobody else gets an answer.
    async with aiohttp.ClientSession() as http:
        params = {"from": "84987542228", "to": "8088", "text": f"HS {dossier.code}"}
        async with http.get(server.make_url("/sms/kannel/inbound"), params=params) as response:
            assert response.status == 401
