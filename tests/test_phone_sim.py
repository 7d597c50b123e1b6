"""The terminal phone against the real app over real HTTP."""

from __future__ import annotations

from gateway.phone_sim import run_phone


async def test_phone_walks_a_dialogue_and_quits(client):
    keys = iter(["6", "0", "0", "q"])
    out: list[str] = []
    url = str(client.make_url("")).rstrip("/")
    code = await run_phone(url, "0987542228", "*384#", read=lambda prompt: next(keys), write=out.append)
    assert code == 0
    screens = "\n".join(out)
    assert "| DVC UBND xa Phuong Ky" in screens
    assert "| Hotline 0987.542.228." in screens or "Hotline 0987.542.228" in screens
    assert "| Cam on ban da dung dich vu cong." in screens


async def test_phone_refuses_a_bad_number(client):
    out: list[str] = []
    code = await run_phone("http://127.0.0.1:1", "12345", "*384#", read=lambda p: "q", write=out.append)
    assert code == 2
    assert "not a Vietnamese mobile number" in out[0]


async def test_phone_says_when_the_gateway_is_down():
    out: list[str] = []
    code = await run_phone("http://127.0.0.1:9", "0987542228", "*384#", read=lambda p: "q", write=out.append)
    assert code == 1
    assert "cannot reach the gateway" in out[-1]


async def test_phone_lists_the_sms_the_console_delivered_to_it(client):
    import asyncio

    from gateway.app import OUTBOX
    from models.entities import OutboundSms, SmsKind, SmsStatus

    row = await client.app[OUTBOX].enqueue("+84987542228", "Hồ sơ đã có kết quả", SmsKind.INFO, urgent=True)
    deadline = asyncio.get_running_loop().time() + 5
    while (await OutboundSms.get(id=row.id)).status is not SmsStatus.SENT:
        assert asyncio.get_running_loop().time() < deadline, "the console transport did not send the SMS within 5 s"
        await asyncio.sleep(0.05)
    keys = iter(["0", "q"])
    out: list[str] = []
    url = str(client.make_url("")).rstrip("/")
    await run_phone(url, "0987542228", "*384#", read=lambda prompt: next(keys), write=out.append)
    sms_lines = [line for line in out if line.startswith("SMS ")]
    assert len(sms_lines) == 1
    assert sms_lines[0].endswith("[gsm7, 1 part(s)]: Ho so da co ket qua")


async def test_the_local_inbox_answers_only_this_machine(client):
    from gateway.app import local_inbox
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/sms/console/sent?msisdn=0987542228", app=client.app)
    # A mocked request has no peer address: anything not loopback is refused.
    response = await local_inbox(request)
    assert response.status == 403
