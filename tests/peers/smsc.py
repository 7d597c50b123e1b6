"""A real SMPP 3.4 SMSC on loopback, for testing our SMPP transport.

The SMSC is the ``Server`` of the ``smpp34`` package (PyPI): a Rust/tokio SMPP 3.4
server with a Python asyncio front. It answers bind_transceiver, enquire_link and
unbind by itself; this harness decides what each submit_sm gets back and pushes
deliver_sm (delivery receipts, mobile-originated messages) to the bound ESME.

Two ways to run it:

* :class:`SmscPeer`, in the test's own event loop, scriptable::

      async with SmscPeer() as smsc:                 # smsc.port: a free 127.0.0.1 port
          smsc.status_for = lambda submit: smpp34.ESME_RTHROTTLED   # default: ESME_ROK
          smsc.response_delay = 0.05                 # hold each submit_sm_resp this long
          submits = await smsc.wait_submits(4)       # what reached the SMSC (Submit records)
          submits[0].text(), submits[0].udh(), smsc.max_outstanding
          await smsc.deliver(source="0987542228", destination="8088", text="Xin chào")
          await smsc.receipt("smsc-000001", "DELIVRD")

* :class:`SmscProcess`, the same server in a child process (accept-all), so a test can
  kill it (the SMSC crashes: its sockets close), start it again on the same port, or
  freeze it with SIGSTOP (the SMSC hangs: TCP stays up, nothing answers).

Facts checked against smpp34 1.5.0 (see tests/test_smpp_transport.py):

* ``Server.stop()`` only closes the listening socket: sessions already bound stay up
  and keep answering enquire_link. :meth:`SmscPeer.disconnect_all` unbinds them
  (server-initiated unbind); a crash needs :class:`SmscProcess`.
* After ``stop()``, ``Server.next()`` never returns: the event loop task is cancelled.
* ``SubmitSmEvent.reject(status)`` sends the status as given for the ESME_* codes of
  SMPP 3.4 (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL 0x14, ESME_RINVDSTADR 0x0B...), but
  turns a status it does not know (e.g. vendor-specific 0x401) into ESME_RSYSERR (0x08).
* The ESME's data is handed over raw: ``short_message`` is the bytes as sent (UDH
  included when esm_class has UDHI 0x40), ``data_coding`` as sent.
* Any system_id / password is accepted at bind.
* On the ESME's unbind it reports ``Unbound`` and mostly closes the connection without
  sending unbind_resp (2 closes out of 30 got one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import smpp34

HOST = "127.0.0.1"

# 3GPP TS 23.038 GSM 7-bit default alphabet (code -> char) and extension table (after
# ESC 0x1B). Written out here on purpose: the transport under test encodes with its
# own library's codec, so the SMSC side decodes with an independent table.
GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}
GSM7_ENCODE = {ch: bytes([i]) for i, ch in enumerate(GSM7_TABLE) if i != 0x1B}
GSM7_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in GSM7_EXTENSION.items()})

assert len(GSM7_TABLE) == 128


def gsm7_decode(data: bytes) -> str:
    """Unpacked GSM 7-bit (one septet per octet, as SMPP carries it) to text."""
    out: list[str] = []
    escape = False
    for byte in data:
        if escape:
            out.append(GSM7_EXTENSION.get(byte, "?"))
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(GSM7_TABLE[byte & 0x7F])
    return "".join(out)


def gsm7_encode(text: str) -> bytes:
    return b"".join(GSM7_ENCODE[ch] for ch in text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def split_udh(esm_class: int, body: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(concat ref, total, seq) from a concatenation UDH (IEI 0x00 or 0x08), and the rest."""
    if not esm_class & 0x40 or not body:
        return None, body
    udhl = body[0]
    header, rest = body[1 : 1 + udhl], body[1 + udhl :]
    i = 0
    concat = None
    while i + 2 <= len(header):
        iei, iedl = header[i], header[i + 1]
        data = header[i + 2 : i + 2 + iedl]
        if iei == 0x00 and iedl == 3:
            concat = (data[0], data[1], data[2])
        elif iei == 0x08 and iedl == 4:
            concat = ((data[0] << 8) | data[1], data[2], data[3])
        i += 2 + iedl
    return concat, rest


def decode_body(data_coding: int, body: bytes) -> str:
    if data_coding == 8:
        return body.decode("utf-16-be")
    if data_coding == 0:
        return gsm7_decode(body)
    if data_coding == 3:
        return body.decode("latin-1")
    return body.decode("ascii")


@dataclass
class Submit:
    """One submit_sm as the SMSC received it."""

    session_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    tlvs: list[tuple[int, bytes]]
    received_at: float
    status: int | None = None  # what the SMSC answered
    message_id: str | None = None  # set when accepted

    @classmethod
    def of(cls, event: smpp34.SubmitSmEvent) -> "Submit":
        return cls(
            session_id=event.session_id,
            source_addr=event.source_addr,
            source_addr_ton=event.source_addr_ton,
            source_addr_npi=event.source_addr_npi,
            destination_addr=event.destination_addr,
            dest_addr_ton=event.dest_addr_ton,
            dest_addr_npi=event.dest_addr_npi,
            esm_class=event.esm_class,
            data_coding=event.data_coding,
            registered_delivery=event.registered_delivery,
            short_message=bytes(event.short_message),
            tlvs=[(t.tag, bytes(t.value)) for t in event.tlvs],
            received_at=time.monotonic(),
        )

    def udh(self) -> tuple[int, int, int] | None:
        """(reference, total parts, this part) when the part carries a concatenation UDH."""
        return split_udh(self.esm_class, self.short_message)[0]

    def body(self) -> bytes:
        return split_udh(self.esm_class, self.short_message)[1]

    def text(self) -> str:
        return decode_body(self.data_coding, self.body())


def concat_parts_text(submits: list[Submit]) -> str:
    """The text of a concatenated message, from its parts in UDH order."""
    ordered = sorted(submits, key=lambda s: (s.udh() or (0, 1, 1))[2])
    return "".join(s.text() for s in ordered)


def receipt_text(message_id: str, stat: str, *, err: str = "000", sub: str = "001", dlvrd: str | None = None,
                 submit_date: str = "2501011200", done_date: str = "2501011201", text: str = "") -> str:
    """A delivery receipt body in the SMPP 3.4 Appendix B format."""
    if dlvrd is None:
        dlvrd = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} done date:{done_date}"
        f" stat:{stat} err:{err} text:{text[:20]}"
    )


@dataclass
class SmscPeer:
    """smpp34.Server on a free loopback port, driven from the test's event loop."""

    port: int = 0
    system_id: str = "SMSC"
    # submit_sm -> command_status to answer (smpp34.ESME_*); ESME_ROK accepts with a new id.
    status_for: Callable[[Submit], int] = field(default=lambda submit: smpp34.ESME_ROK)
    response_delay: float = 0.0  # hold every submit_sm_resp this long (to see the ESME's window)
    submits: list[Submit] = field(default_factory=list)
    sessions: list[smpp34.Esme] = field(default_factory=list)
    unbound: list[str] = field(default_factory=list)
    outstanding: int = 0
    max_outstanding: int = 0

    def __post_init__(self) -> None:
        self._server: smpp34.Server | None = None
        self._loop_task: asyncio.Task | None = None
        self._replies: set[asyncio.Task] = set()
        self._ids = 0

    async def start(self) -> "SmscPeer":
        last_error: Exception | None = None
        for _ in range(5):
            port = self.port or free_port()
            server = smpp34.Server(host=HOST, port=port, system_id=self.system_id)
            try:
                await server.start()
            except Exception as exc:  # noqa: BLE001 - port taken between free_port() and bind
                last_error = exc
                if self.port:
                    raise
                continue
            self._server, self.port = server, port
            self._loop_task = asyncio.create_task(self._events(), name=f"smsc-{port}")
            return self
        raise RuntimeError(f"SMSC could not listen on {HOST}: {last_error!r}")

    async def __aenter__(self) -> "SmscPeer":
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Unbind every session still up, stop listening, end the event task."""
        await self.disconnect_all(strict=False)  # teardown: the ESME may be closing too
        for task in list(self._replies):
            task.cancel()
        await asyncio.gather(*self._replies, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    async def disconnect_all(self, *, strict: bool = True) -> None:
        """Server-initiated unbind of every bound session (an orderly SMSC shutdown).
        An unbind that hangs is an error (unless ``strict`` is off): the test that asked
        for the shutdown would otherwise go on against a session that is still up."""
        sessions, self.sessions = self.sessions, []
        for session in sessions:
            try:
                await asyncio.wait_for(session.unbind(), 2)
            except TimeoutError:
                if strict:
                    raise AssertionError(f"SMSC: unbind of session {session.session_id} hung for 2s") from None
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def _events(self) -> None:
        assert self._server is not None
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions.append(event)
            elif isinstance(event, smpp34.Unbound):
                self.unbound.append(event.session_id)
                self.sessions = [s for s in self.sessions if s.session_id != event.session_id]
            elif isinstance(event, smpp34.SubmitSmEvent):
                submit = Submit.of(event)
                self.submits.append(submit)
                self.outstanding += 1
                self.max_outstanding = max(self.max_outstanding, self.outstanding)
                if self.response_delay > 0:
                    task = asyncio.create_task(self._reply(event, submit, self.response_delay))
                    self._replies.add(task)
                    task.add_done_callback(self._replies.discard)
                else:
                    await self._reply(event, submit, 0)

    async def _reply(self, event: smpp34.SubmitSmEvent, submit: Submit, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        self.outstanding -= 1
        status = self.status_for(submit)
        submit.status = status
        if status == smpp34.ESME_ROK:
            self._ids += 1
            submit.message_id = f"smsc-{self.port}-{self._ids:06d}"
            event.accept(message_id=submit.message_id)
        else:
            event.reject(status)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"SMSC: timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)

    async def wait_bound(self, count: int = 1, timeout: float = 3.0) -> smpp34.Esme:
        await self.wait_for(lambda: len(self.sessions) >= count, timeout, f"{count} bound session(s)")
        return self.sessions[-1]

    async def wait_submits(self, count: int, timeout: float = 3.0) -> list[Submit]:
        await self.wait_for(lambda: len(self.submits) >= count, timeout, f"{count} submit_sm")
        return self.submits[:count]

    async def deliver(self, *, source: str, destination: str, text: str | None = None, body: bytes | None = None,
                      data_coding: int | None = None, esm_class: int = 0, source_ton: int = 1, source_npi: int = 1,
                      tlvs: list[smpp34.Tlv] | None = None) -> int:
        """Push a deliver_sm to the newest bound session; returns the ESME's command_status."""
        if body is None:
            assert text is not None
            try:
                body, coding = gsm7_encode(text), 0
            except KeyError:
                body, coding = text.encode("utf-16-be"), 8
            data_coding = coding if data_coding is None else data_coding
        session = await self.wait_bound()
        resp = await asyncio.wait_for(
            session.deliver_sm(
                destination,
                body,
                source_addr=source,
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                esm_class=esm_class,
                data_coding=data_coding or 0,
                tlvs=tlvs or [],
            ),
            5,
        )
        return resp.command_status

    async def receipt(self, message_id: str, stat: str, *, source: str = "84987542228", destination: str = "8088",
                      esm_class: int = 0x04, tlvs: list[smpp34.Tlv] | None = None, **fields: str) -> int:
        """Push an SMSC delivery receipt (esm_class 0x04, Appendix B text) for ``message_id``."""
        text = receipt_text(message_id, stat, **fields)
        return await self.deliver(source=source, destination=destination, body=text.encode("ascii"),
                                  data_coding=0, esm_class=esm_class, tlvs=tlvs)


class SmscProcess:
    """The same SMSC (accept-all) in a child process: kill it, restart it, freeze it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.submits: list[dict] = []
        self.binds = 0
        self._reader: asyncio.Task | None = None

    async def start(self, timeout: float = 10.0) -> "SmscProcess":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if json.loads(line or b"{}").get("event") != "ready":
            await self.kill()
            raise RuntimeError(f"SMSC process did not start on port {self.port}: {line!r}")
        self._reader = asyncio.create_task(self._read(self.proc.stdout))
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            event = json.loads(line)
            if event["event"] == "submit":
                self.submits.append(event)
            elif event["event"] == "bind":
                self.binds += 1

    async def kill(self) -> None:
        """SIGKILL: the SMSC dies, the kernel closes its sockets."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a hung SMSC)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def __aenter__(self) -> "SmscProcess":
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.kill()


async def _serve(port: int) -> None:
    server = smpp34.Server(host=HOST, port=port, system_id="SMSC")
    await server.start()

    def emit(**event: object) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    emit(event="ready", port=port)
    count = 0
    while True:
        event = await server.next()
        if isinstance(event, smpp34.Esme):
            emit(event="bind", system_id=event.system_id)
        elif isinstance(event, smpp34.SubmitSmEvent):
            count += 1
            message_id = f"proc-{os.getpid()}-{count:06d}"
            # Reported before it is answered: a test may kill us as soon as the answer is in.
            emit(event="submit", message_id=message_id, destination=event.destination_addr,
                 data_coding=event.data_coding, esm_class=event.esm_class,
                 short_message=bytes(event.short_message).hex())
            event.accept(message_id=message_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Accept-all SMPP 3.4 SMSC (smpp34) on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))
