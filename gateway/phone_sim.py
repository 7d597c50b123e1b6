"""A terminal phone: dials the running gateway through ``POST /ussd/at`` as an aggregator would.

Shows each screen, takes keypad input, keeps the cumulative ``text`` the way aggregators
do, and after each dialogue lists the SMS the console transport delivered to this phone.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Callable

import aiohttp

from gateway.phones import normalize_msisdn


def _frame(screen: str) -> str:
    width = max([24] + [len(line) for line in screen.splitlines()])
    lines = ["+" + "-" * (width + 2) + "+"]
    lines += [f"| {line.ljust(width)} |" for line in screen.splitlines()]
    lines.append("+" + "-" * (width + 2) + "+")
    return "\n".join(lines)


async def dial(
    session: aiohttp.ClientSession,
    url: str,
    msisdn: str,
    code: str,
    read: Callable[[str], str],
    write: Callable[[str], None],
) -> None:
    """One USSD dialogue, from dial to END."""
    session_id = "sim-" + uuid.uuid4().hex[:12]
    inputs: list[str] = []
    while True:
        form = {
            "sessionId": session_id,
            "serviceCode": code,
            "phoneNumber": msisdn,
            "networkCode": "45204",
            "text": "*".join(inputs),
        }
        async with session.post(f"{url}/ussd/at", data=form) as response:
            body = await response.text()
            if response.status != 200:
                write(f"[gateway answered HTTP {response.status}: {body}]")
                return
        kind, _, screen = body.partition(" ")
        write(_frame(screen))
        if kind != "CON":
            return
        answer = await asyncio.to_thread(read, "> ")
        inputs.append(answer.strip())


async def show_sms(session: aiohttp.ClientSession, url: str, msisdn: str, write: Callable[[str], None]) -> None:
    async with session.get(f"{url}/sms/console/sent", params={"msisdn": msisdn}) as response:
        if response.status != 200:
            write("(SMS: the gateway is not using the console transport)")
            return
        messages = (await response.json())["messages"]
    if not messages:
        write("(no SMS for this phone)")
    for message in messages:
        write(f"SMS {message['sent_at']} [{message['encoding']}, {message['parts']} part(s)]: {message['text']}")


async def run_phone(url: str, raw_msisdn: str, code: str, read=input, write=print) -> int:
    msisdn = normalize_msisdn(raw_msisdn)
    if msisdn is None:
        write(f"not a Vietnamese mobile number: {raw_msisdn}")
        return 2
    write(f"Phone {raw_msisdn} dialling {code} at {url}. Ctrl-D or 'q' at the dial prompt quits.")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        while True:
            try:
                await dial(session, url, msisdn, code, read, write)
                await show_sms(session, url, msisdn, write)
                again = await asyncio.to_thread(read, "Enter to dial again, q to quit: ")
            except (EOFError, KeyboardInterrupt):
                return 0
            except aiohttp.ClientError as exc:
                write(f"cannot reach the gateway at {url}: {exc}")
                return 1
            if again.strip().lower() == "q":
                return 0
