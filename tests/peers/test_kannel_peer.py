"""End-to-end proofs that the Kannel harness works (and of the Kannel facts in README.md).

A tiny aiohttp app stands in for our gateway: /kannel/inbound records MO
get-url calls and answers with a configurable body, /kannel/dlr records DLRs.
These tests FAIL (never skip) when Kannel is not installed.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse

import aiohttp
import pytest
from aiohttp import web

from tests.waiting import eventually as wait_until

from .kannel import (
    APT_HINT,
    KannelNotInstalled,
    KannelPeer,
    listening_ports,
    require_kannel,
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PHONE = "84901234567"
SHORTCODE = "8088"


class FakeGateway:
    """Records what smsbox calls; the inbound reply is configurable."""

    def __init__(self) -> None:
        self.inbound: list[dict] = []
        self.dlrs: list[dict] = []
        self.reply_body = ""
        self.reply_headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        self.base_url = ""

    @staticmethod
    def _record(request: web.Request) -> dict:
        qs = request.raw_path.partition("?")[2]  # still percent-encoded
        return {
            "q": dict(request.query),  # decoded as UTF-8
            # byte-exact values, for %b / UCS-2 bodies
            "raw": {
                k: v.encode("latin-1")
                for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True, encoding="latin-1")
            },
            "headers": dict(request.headers),
        }

    async def on_inbound(self, request: web.Request) -> web.Response:
        self.inbound.append(self._record(request))
        return web.Response(body=self.reply_body.encode("utf-8"), headers=self.reply_headers)

    async def on_dlr(self, request: web.Request) -> web.Response:
        self.dlrs.append(self._record(request))
        return web.Response(text="")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/kannel/inbound", self.on_inbound)
        app.router.add_get("/kannel/dlr", self.on_dlr)
        return app


@pytest.fixture
async def gateway(aiohttp_server) -> FakeGateway:
    gw = FakeGateway()
    server = await aiohttp_server(gw.app(), host="127.0.0.1")
    gw.base_url = str(server.make_url("")).rstrip("/")
    return gw


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def sendsms(http: aiohttp.ClientSession, kannel: KannelPeer, **params) -> str:
    """What our gateway does: GET /cgi-bin/sendsms. Returns the body ('0: Accepted...')."""
    async with http.get(kannel.sendsms_url, params=kannel.sendsms_params(**params)) as resp:
        body = await resp.text()
        assert resp.status == 202, (resp.status, body)
        return body


# ---------------------------------------------------------------------------


def test_kannel_is_installed():
    try:
        require_kannel()
    except KannelNotInstalled as e:  # fail loudly with the fix, never skip
        pytest.fail(f"{e}\nRun: {APT_HINT}")


async def test_mt_gsm_text_reaches_fakesmsc(http):
    async with KannelPeer() as kannel:
        texts = [
            ("Ho so 123 da duoc tiep nhan.", {}),
            ("GSM @ £ $ è à 100% & + = ?", {"charset": "UTF-8"}),
            ("ext {x} [y] ^~ \\ | €", {}),
        ]
        for text, extra in texts:
            body = await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text=text, coding=0, **extra)
            assert body.startswith("0: Accepted for delivery")
        got = await kannel.received(count=3)
        assert [(m.sender, m.receiver, m.coding, m.text) for m in got] == [
            (SHORTCODE, PHONE, "gsm", t) for t, _ in texts
        ]
        assert all(m.parts[0].kind == "text" for m in got)

        # Non-GSM characters with coding=0 are replaced by '?' by smsbox.
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text="Việt ₫", coding=0, charset="UTF-8")
        got = await kannel.received(count=4)
        assert got[-1].text == "Vi?t ?"


async def test_mt_ucs2_vietnamese_reaches_fakesmsc(http):
    short = "Xin chào! Hồ sơ của bạn đã được tiếp nhận ₫"
    long = "Thủ tục hành chính: đăng ký khai sinh, chứng thực bản sao, xác nhận cư trú. " * 2
    async with KannelPeer() as kannel:
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text=short, coding=2, charset="UTF-8")
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text=long, coding=2, charset="UTF-8")
        got = await kannel.received(count=2)
        assert (got[0].sender, got[0].receiver, got[0].coding, got[0].text) == (
            SHORTCODE, PHONE, "ucs2", short)
        assert got[0].parts[0].kind == "ucs-2"
        # > 70 UCS-2 chars: split by smsbox into UDH-concatenated parts, joined here.
        assert got[1].coding == "ucs2" and got[1].text == long
        assert len(got[1].parts) == 3 and all(p.kind == "udh" for p in got[1].parts)

        # Gotcha: coding=2 WITHOUT charset treats the UTF-8 bytes as UCS-2 -> garbage.
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text="Việt", coding=2)
        got = await kannel.received(count=3)
        assert got[2].text != "Việt"


async def test_mo_calls_get_url_and_reply_body_becomes_mt(gateway, http):
    async with KannelPeer(gateway.base_url) as kannel:
        # 1) GSM text MO; plain reply body comes back as an MT to the sender.
        gateway.reply_body = "Da nhan yeu cau HS 42"
        await kannel.inject_mo(PHONE, SHORTCODE, "HS 42 tra cuu")
        await wait_until(lambda: len(gateway.inbound) == 1, what="inbound call")
        q = gateway.inbound[0]["q"]
        assert (q["from"], q["to"], q["text"], q["smsc"], q["coding"]) == (
            PHONE, SHORTCODE, "HS 42 tra cuu", "fake", "0")
        assert UUID_RE.match(q["id"]), q["id"]  # %I = Kannel's message UUID
        assert gateway.inbound[0]["headers"]["User-Agent"].startswith("Kannel/")
        got = await kannel.received(count=1)
        assert (got[0].sender, got[0].receiver, got[0].text) == (SHORTCODE, PHONE, "Da nhan yeu cau HS 42")

        # 2) Vietnamese MO (injected as UCS-2, like a phone); mo-recode gives UTF-8.
        #    Vietnamese reply needs X-Kannel-Coding: 2 (accept-x-kannel-headers).
        gateway.reply_body = "Cảm ơn, hồ sơ đã được tiếp nhận"
        gateway.reply_headers = {"Content-Type": "text/plain; charset=utf-8", "X-Kannel-Coding": "2"}
        line = await kannel.inject_mo("+" + PHONE, SHORTCODE, "Đăng ký khai sinh")
        assert " ucs2 " in line
        await wait_until(lambda: len(gateway.inbound) == 2, what="second inbound call")
        q = gateway.inbound[1]["q"]
        assert (q["from"], q["text"], q["coding"], q["charset"]) == (
            "+" + PHONE, "Đăng ký khai sinh", "0", "UTF-8")
        got = await kannel.received(count=2)
        assert (got[1].receiver, got[1].coding, got[1].text) == (
            "+" + PHONE, "ucs2", "Cảm ơn, hồ sơ đã được tiếp nhận")

        # 3) Without X-Kannel-Coding a non-GSM reply is degraded to '?'.
        gateway.reply_headers = {"Content-Type": "text/plain; charset=utf-8"}
        gateway.reply_body = "Việt"
        await kannel.inject_mo(PHONE, SHORTCODE, "x")
        got = await kannel.received(count=3)
        assert got[2].text == "Vi?t"

        # 4) reply_mode="reply": an empty body still sends Kannel's canned text.
        gateway.reply_body = ""
        await kannel.inject_mo(PHONE, SHORTCODE, "y")
        got = await kannel.received(count=4)
        assert got[3].text == "<Empty reply from service provider>"


async def test_mo_ucs2_raw_without_mo_recode(gateway):
    text = "Xin chào Việt Nam ₫"
    async with KannelPeer(
        gateway.base_url, mo_recode=False, reply_mode="none",
        get_url="/kannel/inbound?from=%p&to=%P&body=%b&coding=%c&charset=%C",
    ) as kannel:
        await kannel.inject_mo(PHONE, SHORTCODE, text)
        await wait_until(lambda: gateway.inbound, what="inbound call")
        rec = gateway.inbound[0]
        assert (rec["q"]["coding"], rec["q"]["charset"]) == ("2", "UTF-16BE")
        assert rec["raw"]["body"].decode("utf-16-be") == text  # %b is byte-exact


async def test_reply_mode_none_gateway_replies_via_sendsms(gateway, http):
    gateway.reply_body = "MUST NOT BE SENT"
    async with KannelPeer(gateway.base_url, reply_mode="none") as kannel:
        await kannel.inject_mo(PHONE, SHORTCODE, "menu")
        await wait_until(lambda: gateway.inbound, what="inbound call")
        # our gateway answers asynchronously through sendsms instead
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text="1. Khai sinh 2. Cu tru", coding=0)
        await kannel.received(count=1)
        await asyncio.sleep(0.3)
        assert [m.text for m in kannel.delivered()] == ["1. Khai sinh 2. Cu tru"]


async def test_reply_mode_omit_empty(gateway):
    async with KannelPeer(gateway.base_url, reply_mode="omit-empty") as kannel:
        gateway.reply_body = ""
        await kannel.inject_mo(PHONE, SHORTCODE, "first")
        await wait_until(lambda: len(gateway.inbound) == 1, what="inbound call")
        gateway.reply_body = "second reply"
        await kannel.inject_mo(PHONE, SHORTCODE, "second")
        await kannel.received(count=1)
        await asyncio.sleep(0.3)
        assert [m.text for m in kannel.delivered()] == ["second reply"]


async def test_delivery_reports_call_dlr_url(gateway, http):
    async with KannelPeer(gateway.base_url) as kannel:
        def dlr_url(ref: str) -> str:
            # our own id in the URL is the only way to correlate: sendsms returns no id
            return (f"{gateway.base_url}/kannel/dlr?ref={ref}&status=%d&to=%p&from=%P"
                    f"&answer=%A&kid=%I&ts=%T")

        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text="dlr all", coding=0,
                      dlr_mask=31, dlr_url=dlr_url("msg-31"))
        await sendsms(http, kannel, from_=SHORTCODE, to=PHONE, text="dlr final", coding=0,
                      dlr_mask=1, dlr_url=dlr_url("msg-1"))
        await kannel.received(count=2)
        await wait_until(lambda: len(gateway.dlrs) >= 3, what="3 DLR calls")
        await asyncio.sleep(0.3)  # no extra DLR may follow
        got = sorted((d["q"]["ref"], d["q"]["status"]) for d in gateway.dlrs)
        # fakesmsc only ever yields 8 (SMSC ack) and 1 (delivered); never 2/4/16.
        assert got == [("msg-1", "1"), ("msg-31", "1"), ("msg-31", "8")]
        for d in gateway.dlrs:
            assert (d["q"]["to"], d["q"]["from"]) == (PHONE, SHORTCODE)
            assert UUID_RE.match(d["q"]["kid"])
        ack = next(d for d in gateway.dlrs if d["q"]["status"] == "8")
        assert ack["q"]["answer"] == "ACK/"


async def test_stop_cleans_up_processes_and_ports():
    kannel = KannelPeer()
    await kannel.start()
    procs = list(kannel._procs.values())
    ports = set(kannel.ports.values())
    workdir = kannel.workdir
    assert ports <= listening_ports()
    await kannel.stop()
    assert all(p.returncode is not None for p in procs)  # reaped, no zombies
    assert not (ports & listening_ports())
    assert not workdir.exists()
