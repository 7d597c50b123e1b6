"""A terminal phone: dials the running gateway through ``POST /ussd/at`` as an aggregator would.

Shows each screen, takes keypad input, keeps the cumulative ``text`` the way aggregators
do, and shows the SMS the console transport delivers to this phone as they arrive (an OTP
sent mid-dialogue is on screen before the code is asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Inbox:
    """The SMS the console transport delivered to this phone, shown as they arrive (an OTP
    comes mid-dialogue: it must be readable before the code screen wants it)."""

    POLL_SECONDS = 0.3

    def __init__(self, session: aiohttp.ClientSession, url: str, msisdn: str, write: Callable[[str], None]) -> None:
        self._session, self._url, self._msisdn, self._write = session, url, msisdn, write
        self._last: tuple[str, str] | None = None  # the newest message shown
        self._lock = asyncio.Lock()
        self.available = True

    async def show_new(self, say_if_empty: bool = False) -> None:
        async with self._lock:
            if not self.available:
                return
            async with self._session.get(f"{self._url}/sms/console/sent", params={"msisdn": self._msisdn}) as response:
                if response.status != 200:
                    self.available = False
                    self._write("(SMS: the gateway is not using the console transport)")
                    return
                messages = (await response.json())["messages"]
            if not messages and say_if_empty:
                self._write("(no SMS for this phone)")
            keys = [(m["sent_at"], m["text"]) for m in messages]
            # The inbox keeps the last 50: new ones are those after the last shown.
            start = len(keys) - keys[::-1].index(self._last) if self._last in keys else 0
            for message in messages[start:]:
                self._write(f"SMS {message['sent_at']} [{message['encoding']}, {message['parts']} part(s)]: {message['text']}")
            if keys:
                self._last = keys[-1]

    async def watch(self) -> None:
        while self.available:
            await asyncio.sleep(self.POLL_SECONDS)
            try:
                await self.show_new()
            except aiohttp.ClientError:
                pass  # the dialogue says when the gateway is unreachable


async def run_phone(url: str, raw_msisdn: str, code: str, read=input, write=print) -> int:
    msisdn = normalize_msisdn(raw_msisdn)
    if msisdn is None:
        write(f"not a Vietnamese mobile number: {raw_msisdn}")
        return 2
    write(f"Phone {raw_msisdn} dialling {code} at {url}. Ctrl-D or 'q' at the dial prompt quits.")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        inbox = Inbox(session, url, msisdn, write)
        watcher: asyncio.Task | None = None
        try:
            while True:
                try:
                    await inbox.show_new(say_if_empty=watcher is None)
                    if watcher is None:
                        watcher = asyncio.create_task(inbox.watch())
                    await dial(session, url, msisdn, code, read, write)
                    await inbox.show_new()
                    again = await asyncio.to_thread(read, "Enter to dial again, q to quit: ")
                except (EOFError, KeyboardInterrupt):
                    return 0
                except aiohttp.ClientError as exc:
                    write(f"cannot reach the gateway at {url}: {exc}")
                    return 1
                if again.strip().lower() == "q":
                    return 0
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
