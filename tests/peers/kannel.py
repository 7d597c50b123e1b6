"""A real Kannel (bearerbox + smsbox + fakesmsc) on loopback, for integration tests.

Usage::

    async with KannelPeer(base_url="http://127.0.0.1:8080") as kannel:
        # MT: our gateway calls kannel.sendsms_url with kannel.username/password
        msgs = await kannel.received(count=1, timeout=10)
        # MO: a phone sends an SMS; smsbox calls <base_url><get_url>
        await kannel.inject_mo("84901234567", "8088", "Xin chào")

Topology (all on 127.0.0.1, every port picked free at start):

    fakesmsc (MT sink, -m 0) --tcp--> bearerbox fake SMSC "mt"  <- all MTs go here
    fakesmsc (one per MO, -m 1) -tcp-> bearerbox fake SMSC "mo" <- MO injection only
    smsbox --tcp--> bearerbox smsbox-port; smsbox serves sendsms on sendsms_port
    bearerbox admin HTTP (status.txt) on admin_port

See tests/peers/README.md for the verified Kannel facts behind this design.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

APT_HINT = "apt-get update && apt-get install -y kannel kannel-extras"

BEARERBOX = os.environ.get("KANNEL_BEARERBOX", "/usr/sbin/bearerbox")
SMSBOX = os.environ.get("KANNEL_SMSBOX", "/usr/sbin/smsbox")
FAKESMSC = os.environ.get("KANNEL_FAKESMSC", "/usr/lib/kannel/test/fakesmsc")

HOST = "127.0.0.1"
SMSC_ID = "fake"

#: Default inbound (MO) query. %p sender, %P receiver, %a text (all words, see
#: README: prefer %b for byte-exact bodies), %I Kannel message id (UUID),
#: %i smsc-id, %c coding (0/1/2), %C charset, %T unix time.
DEFAULT_GET_URL = (
    "/kannel/inbound?from=%p&to=%P&text=%a&id=%I&smsc=%i&coding=%c&charset=%C&ts=%T"
)

REPLY_MODES = ("reply", "omit-empty", "none")

# GSM 03.38 basic + extension table, minus LF/CR/ESC (which would break the
# fakesmsc line protocol or are not text). Used for inject_mo(coding="auto").
_GSM_CHARS = set(
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€"
)

_GOT_RE = re.compile(rb"Got message \d+: <(.*)>\r?$")


class KannelNotInstalled(RuntimeError):
    """The Kannel binaries are missing. Tests must fail (not skip) on this."""


class KannelPeerError(RuntimeError):
    """Kannel did not start, or an expected message did not show up in time."""


def require_kannel() -> None:
    missing = [p for p in (BEARERBOX, SMSBOX, FAKESMSC) if not os.access(p, os.X_OK)]
    if missing:
        raise KannelNotInstalled(
            "Kannel binaries missing: %s. Install them with: %s "
            "(bearerbox/smsbox come from 'kannel', fakesmsc from 'kannel-extras')."
            % (", ".join(missing), APT_HINT)
        )


# ----------------------------------------------------------------- parsing --


def _urldecode(s: bytes) -> bytes:
    # Kannel's octstr_url_encode writes space as '+', everything else as %XX.
    return urllib.parse.unquote_to_bytes(s.replace(b"+", b" "))


@dataclass(frozen=True)
class MTPart:
    """One line fakesmsc printed as received from bearerbox (one SMS PDU)."""

    sender: str
    receiver: str
    kind: str  # "text" | "data" | "ucs-2" | "udh"
    payload: bytes  # message body bytes (url-decoded where fakesmsc encodes)
    udh: bytes = b""
    line: str = ""

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(ref, total, seq) from a concatenation UDH IE (0x00 or 0x08)."""
        u = self.udh
        i = 1
        while i + 1 < len(u):
            iei, ln = u[i], u[i + 1]
            d = u[i + 2 : i + 2 + ln]
            if iei == 0x00 and ln == 3:
                return d[0], d[1], d[2]
            if iei == 0x08 and ln == 4:
                return (d[0] << 8) | d[1], d[2], d[3]
            i += 2 + ln
        return None


def _decode(payload: bytes, coding: str) -> str:
    if coding == "ucs2":
        return payload.decode("utf-16-be", "replace")
    if coding == "8bit":
        return payload.decode("latin-1")
    return payload.decode("utf-8", "replace")  # Kannel's internal 7-bit text is UTF-8


@dataclass(frozen=True)
class MT:
    """A logical MT message as seen by the fake SMSC (concatenated parts joined)."""

    sender: str
    receiver: str
    text: str
    coding: str  # "gsm" (7-bit, printed as text) | "ucs2" | "8bit"
    payload: bytes
    parts: tuple[MTPart, ...] = field(repr=False, default=())

    def decode(self, coding: str) -> str:
        """Re-decode the joined payload ("gsm", "ucs2", "8bit")."""
        return _decode(self.payload, coding)


def parse_fakesmsc_log(data: bytes) -> list[MTPart]:
    parts: list[MTPart] = []
    for raw in data.split(b"\n"):
        m = _GOT_RE.search(raw)
        if not m:
            continue
        line = m.group(1)
        f = line.split(b" ", 3)
        if len(f) < 3:
            continue
        sender, receiver, kind = (x.decode("utf-8", "replace") for x in f[:3])
        rest = f[3] if len(f) > 3 else b""
        udh = b""
        if kind == "text":
            payload = rest
        elif kind in ("data", "ucs-2"):
            payload = _urldecode(rest)
        elif kind == "udh":  # "<udh-urlenc> data <body-urlenc>"
            u, _, body = rest.partition(b" data ")
            udh, payload = _urldecode(u), _urldecode(body)
        else:
            payload = rest
        parts.append(
            MTPart(sender, receiver, kind, payload, udh, line.decode("utf-8", "replace"))
        )
    return parts


def _guess_coding(kind: str, payload: bytes) -> str:
    if kind == "ucs-2":
        return "ucs2"
    if kind == "data":
        return "8bit"
    if kind == "udh":
        # fakesmsc does not print the coding of UDH parts: UCS-2 bodies are
        # UTF-16BE and nearly always contain NUL bytes, 7-bit bodies never do.
        return "ucs2" if (b"\x00" in payload and len(payload) % 2 == 0) else "gsm"
    return "gsm"


def join_parts(parts: Iterable[MTPart]) -> list[MT]:
    """Group concatenated parts into complete logical messages, in arrival order."""
    out: list[tuple[int, MT]] = []
    groups: dict[tuple, dict[int, tuple[int, MTPart]]] = {}
    totals: dict[tuple, int] = {}
    for idx, p in enumerate(parts):
        c = p.concat
        if c is None:
            coding = _guess_coding(p.kind, p.payload)
            out.append(
                (idx, MT(p.sender, p.receiver, _decode(p.payload, coding), coding, p.payload, (p,)))
            )
            continue
        ref, total, seq = c
        key = (p.sender, p.receiver, ref, total)
        g = groups.setdefault(key, {})
        g[seq] = (idx, p)
        totals[key] = total
        if len(g) == total and all(s in g for s in range(1, total + 1)):
            ordered = [g[s][1] for s in range(1, total + 1)]
            payload = b"".join(x.payload for x in ordered)
            coding = _guess_coding("udh", payload)
            first = min(i for i, _ in g.values())
            out.append(
                (first, MT(p.sender, p.receiver, _decode(payload, coding), coding, payload, tuple(ordered)))
            )
            del groups[key]  # a later message may reuse the reference number
    out.sort(key=lambda t: t[0])
    return [m for _, m in out]


# ------------------------------------------------------------------ helpers --


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state (Linux /proc), without connecting to them."""
    ports: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f, None)
                for ln in f:
                    cols = ln.split()
                    if len(cols) > 3 and cols[3] == "0A":
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


async def _http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        r, w = await asyncio.open_connection(HOST, port)
        try:
            w.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            await w.drain()
            data = await r.read()
        finally:
            w.close()
            try:
                await w.wait_closed()
            except OSError:
                pass
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return status, body

    return await asyncio.wait_for(go(), timeout)


def _tail(path: Path, n: int = 30) -> str:
    """Last n lines of a log, preceded by its first few ERROR/PANIC lines."""
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [ln for ln in lines if " ERROR: " in ln or " PANIC: " in ln][:8]
    head = ["errors:", *errors, "tail:"] if errors else []
    return "\n".join(head + lines[-n:])


_LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:  # safety net if a test run is aborted
    for p in list(_LIVE):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=2)
            except Exception:
                pass
        _LIVE.discard(p)


async def _terminate(procs: list[subprocess.Popen], sigs: list[int], grace: float) -> None:
    """Signal each process group, wait up to `grace`, then SIGKILL and reap."""
    try:
        for p, sig in zip(procs, sigs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:  # also runs on cancellation: never leave a process behind
        for p in procs:
            if p.poll() is None:  # not reaped yet, so its pid/pgid cannot be reused
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(timeout=5)
            _LIVE.discard(p)


def _cfg_value(v: str) -> str:
    if '"' in v or "\n" in v:
        raise ValueError(f"cannot put {v!r} into a Kannel config value")
    return f'"{v}"'


# --------------------------------------------------------------------- peer --


class KannelPeer:
    """bearerbox + smsbox + fakesmsc on free loopback ports, in a temp dir.

    base_url:   our gateway's base URL (e.g. str(aiohttp_server.make_url(""))).
    get_url:    sms-service get-url; relative ("/path?q=%p") is joined to base_url,
                absolute is used as is. Kannel placeholders (%p %P %a %b %I ...)
                are expanded by smsbox; write a literal '%' as '%%'.
    reply_mode: "reply"      -> the body our get-url returns is sent back as MT;
                "omit-empty" -> same, but an empty body sends nothing;
                "none"       -> max-messages = 0, the body is never sent (our
                                gateway replies itself through sendsms).
    mo_recode:  smsbox 'mo-recode': UCS-2 MOs reach get-url as UTF-8 (coding=0,
                charset=UTF-8) instead of raw UTF-16BE (coding=2, charset=UTF-16BE).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        get_url: str = DEFAULT_GET_URL,
        reply_mode: str = "reply",
        mo_recode: bool = True,
        username: str = "gateway",
        password: str = "gw-secret",
        admin_password: str = "kannel-admin",
        max_messages: int = 10,
        extra_smsbox_config: str = "",
        extra_service_config: str = "",
        startup_timeout: float = 15.0,
        start_attempts: int = 3,
        stop_grace: float = 3.0,
        keep_logs: bool | None = None,
    ) -> None:
        if reply_mode not in REPLY_MODES:
            raise ValueError(f"reply_mode must be one of {REPLY_MODES}")
        self.base_url = base_url.rstrip("/") if base_url else None
        if get_url and not get_url.startswith(("http://", "https://")):
            if not self.base_url:
                self.get_url = None
            else:
                self.get_url = self.base_url + "/" + get_url.lstrip("/")
        else:
            self.get_url = get_url or None
        self.reply_mode = reply_mode
        self.mo_recode = mo_recode
        self.username = username
        self.password = password
        self.admin_password = admin_password
        self.max_messages = max_messages
        self.extra_smsbox_config = extra_smsbox_config
        self.extra_service_config = extra_service_config
        self.startup_timeout = startup_timeout
        self.start_attempts = max(1, start_attempts)
        self.stop_grace = stop_grace
        if keep_logs is None:
            keep_logs = os.environ.get("KANNEL_PEER_KEEP_LOGS", "") not in ("", "0")
        self.keep_logs = keep_logs

        self.workdir: Path | None = None
        self.admin_port = self.smsbox_port = self.sendsms_port = 0
        self.mt_port = self.mo_port = 0
        self._procs: dict[str, subprocess.Popen] = {}
        self._inject_lock = asyncio.Lock()
        self._injected = 0
        self.injected: list[str] = []  # fakesmsc lines injected, for debugging

    # -- public properties ---------------------------------------------------

    @property
    def sendsms_url(self) -> str:
        return f"http://{HOST}:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def _status_path(self) -> str:
        return "/status.txt?password=" + urllib.parse.quote(self.admin_password)

    @property
    def status_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}{self._status_path}"

    @property
    def ports(self) -> dict[str, int]:
        return {
            "admin": self.admin_port,
            "smsbox": self.smsbox_port,
            "sendsms": self.sendsms_port,
            "fake_mt": self.mt_port,
            "fake_mo": self.mo_port,
        }

    def sendsms_params(self, to: str, text: str, **extra: str | int) -> dict[str, str]:
        """Query params for GET sendsms_url (extra: from_, coding, charset, dlr_mask, dlr_url...)."""
        params = {"username": self.username, "password": self.password, "to": to, "text": text}
        for k, v in extra.items():
            params[k.rstrip("_").replace("_", "-")] = str(v)
        return params

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> "KannelPeer":
        await self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.stop(failed=exc_type is not None)

    async def start(self) -> None:
        """Start everything; retried with fresh ports if a port was taken meanwhile."""
        require_kannel()
        for attempt in range(1, self.start_attempts + 1):
            try:
                await self._start_once()
                return
            except KannelPeerError:
                last = attempt == self.start_attempts
                await self.stop(failed=last)
                if last:
                    raise
            except BaseException:
                await self.stop(failed=True)
                raise

    async def _start_once(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="kannel-peer-"))
        (
            self.admin_port,
            self.smsbox_port,
            self.sendsms_port,
            self.mt_port,
            self.mo_port,
        ) = _free_ports(5)
        conf = self.workdir / "kannel.conf"
        conf.write_text(self._config())
        deadline = time.monotonic() + self.startup_timeout
        self._spawn("bearerbox", [BEARERBOX, "-v", "0", str(conf)])
        await self._wait(
            lambda: {self.admin_port, self.smsbox_port, self.mt_port, self.mo_port}
            <= listening_ports(),
            deadline,
            "bearerbox listening on admin/smsbox/fake-smsc ports",
            ("bearerbox",),
        )
        self._spawn(
            "fakesmsc-mt",
            # -m 0: never sends, just prints every MT it receives, forever.
            [FAKESMSC, "-H", HOST, "-r", str(self.mt_port), "-m", "0", "0 0 text unused"],
        )
        self._spawn("smsbox", [SMSBOX, "-v", "0", str(conf)])
        await self._wait_status(
            lambda s: re.search(r"\[mt\][^\n]*\(online", s)
            and re.search(r"^\s*smsbox:", s, re.M),
            deadline,
            "fake SMSC 'mt' online and smsbox connected",
        )
        await self._wait(
            lambda: self.sendsms_port in listening_ports(),
            deadline,
            "smsbox sendsms port listening",
            ("smsbox",),
        )

    async def stop(self, failed: bool = False) -> None:
        """Stop everything (idempotent). Logs are kept if `failed` or keep_logs."""
        procs = list(self._procs.items())
        self._procs = {}
        await _terminate([p for _, p in procs], [
            signal.SIGINT if n.startswith("fakesmsc") else signal.SIGTERM for n, _ in procs
        ], self.stop_grace)
        if self.workdir and self.workdir.exists():
            if failed or self.keep_logs:
                print(f"[kannel-peer] logs kept in {self.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # -- MO ------------------------------------------------------------------

    async def inject_mo(
        self, sender: str, receiver: str, text: str | bytes, *, coding: str = "auto",
        timeout: float = 10.0,
    ) -> str:
        """Make fakesmsc submit an MO; returns once bearerbox has counted it.

        coding: "auto" (GSM-representable -> "text", else "ucs2" like a phone),
        "text" (7-bit, sent as UTF-8 text), "ucs2" (UTF-16BE), "data" (8-bit bytes).
        Returns the fakesmsc line that was injected.
        """
        if not self._procs:
            raise KannelPeerError("KannelPeer is not started")
        if " " in sender or " " in receiver or not sender or not receiver:
            raise ValueError("sender/receiver must be non-empty and without spaces")
        if coding == "auto":
            coding = "text" if isinstance(text, str) and set(text) <= _GSM_CHARS else (
                "data" if isinstance(text, bytes) else "ucs2")
        if coding == "text":
            if not isinstance(text, str) or "\n" in text or "\r" in text:
                raise ValueError("coding='text' needs a str without CR/LF (use 'ucs2')")
            body = "text " + text
        elif coding == "ucs2":
            body = "ucs2 " + urllib.parse.quote_plus(str(text).encode("utf-16-be"))
        elif coding == "data":
            raw = text if isinstance(text, bytes) else text.encode("latin-1")
            body = "data " + urllib.parse.quote_plus(raw)
        else:
            raise ValueError(f"unknown coding {coding!r}")
        line = f"{sender} {receiver} {body}"

        async with self._inject_lock:  # the fake SMSC serves one client at a time
            deadline = time.monotonic() + timeout
            st = await self.status()
            before = self._mo_count(st)
            if before < 0:
                raise KannelPeerError(f"no fake[mo] counter in bearerbox status:\n{st}")
            self._injected += 1
            name = f"fakesmsc-mo-{self._injected}"
            self._spawn(name, [FAKESMSC, "-H", HOST, "-r", str(self.mo_port), "-m", "1", line])
            log = self.workdir / f"{name}.log"
            try:
                await self._wait(
                    lambda: b"sent message 1" in log.read_bytes(), deadline,
                    "fakesmsc to submit the MO", (name,))
                await self._wait_status(
                    lambda s: self._mo_count(s) > before, deadline,
                    "bearerbox to count the MO on fake SMSC 'mo'")
            finally:
                # fakesmsc -m 1 never exits by itself: SIGINT makes it close cleanly.
                p = self._procs.pop(name, None)
                if p is not None:
                    await _terminate([p], [signal.SIGINT], 3.0)
        self.injected.append(line)
        return line

    # -- MT ------------------------------------------------------------------

    def parts(self) -> list[MTPart]:
        """Every SMS PDU fakesmsc has printed so far (concatenated parts separate)."""
        if not self.workdir:
            return []
        try:
            return parse_fakesmsc_log((self.workdir / "fakesmsc-mt.log").read_bytes())
        except OSError:
            return []

    def delivered(self) -> list[MT]:
        """Complete logical MT messages received by fakesmsc so far."""
        return join_parts(self.parts())

    async def received(
        self, count: int = 1, timeout: float = 10.0, match: Callable[[MT], bool] | None = None
    ) -> list[MT]:
        """Wait until fakesmsc holds >= count complete MTs (matching `match`); return them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = [m for m in self.delivered() if match is None or match(m)]
            if len(msgs) >= count:
                return msgs
            if time.monotonic() >= deadline:
                raise KannelPeerError(
                    f"expected {count} MT(s) at fakesmsc within {timeout}s, got {len(msgs)}: "
                    f"{msgs!r}\n{await self._diagnostics()}"
                )
            await asyncio.sleep(0.05)

    # -- diagnostics ---------------------------------------------------------

    async def status(self) -> str:
        try:
            code, body = await _http_get(self.admin_port, self._status_path)
        except (OSError, asyncio.TimeoutError):
            return ""
        return body.decode("utf-8", "replace") if code == 200 else ""

    def logs_tail(self, n: int = 30) -> str:
        if not self.workdir:
            return ""
        out = []
        for f in sorted(self.workdir.glob("*.log")):
            out.append(f"--- {f.name} (last {n} lines) ---\n{_tail(f, n)}")
        return "\n".join(out)

    async def _diagnostics(self) -> str:
        st = await self.status()
        return f"workdir: {self.workdir}\n--- bearerbox status ---\n{st}\n{self.logs_tail(15)}"

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _mo_count(status: str) -> int:
        m = re.search(r"\[mo\][^\n]*?rcvd: sms (\d+)", status)
        return int(m.group(1)) if m else -1

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.workdir is not None
        with open(self.workdir / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._procs[name] = p
        _LIVE.add(p)

    def _check_alive(self, names: Iterable[str]) -> None:
        for n in names:
            p = self._procs.get(n)
            if p is not None and p.poll() is not None:
                raise KannelPeerError(
                    f"{n} exited with code {p.returncode}\n"
                    f"--- {n}.log ---\n{_tail(self.workdir / f'{n}.log', 40)}"
                )

    async def _wait(self, cond, deadline: float, what: str, procs: Iterable[str] = ()) -> None:
        while True:
            self._check_alive(procs)
            try:
                if cond():
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise KannelPeerError(f"timed out waiting for {what}\n{await self._diagnostics()}")
            await asyncio.sleep(0.05)

    async def _wait_status(self, cond, deadline: float, what: str) -> None:
        while True:
            self._check_alive(["bearerbox", "smsbox", "fakesmsc-mt"])
            st = await self.status()
            if st and cond(st):
                return
            if time.monotonic() >= deadline:
                raise KannelPeerError(f"timed out waiting for {what}\n{await self._diagnostics()}")
            await asyncio.sleep(0.05)

    def _config(self) -> str:
        if self.reply_mode == "none":
            reply = "max-messages = 0"
        else:
            reply = f"max-messages = {self.max_messages}\nconcatenation = true"
            if self.reply_mode == "omit-empty":
                reply += "\nomit-empty = true"
        if self.get_url:
            service = f"get-url = {_cfg_value(self.get_url)}\naccept-x-kannel-headers = true"
        else:  # no gateway configured: swallow MOs silently
            service, reply = 'text = "no get-url configured"', "max-messages = 0"
        return f"""\
# generated by tests/peers/kannel.py
group = core
admin-port = {self.admin_port}
admin-interface = {HOST}
admin-password = {_cfg_value(self.admin_password)}
status-password = {_cfg_value(self.admin_password)}
admin-allow-ip = "{HOST}"
smsbox-port = {self.smsbox_port}
smsbox-interface = {HOST}
box-allow-ip = "{HOST}"
dlr-storage = internal

# MT sink: a long-running 'fakesmsc -m 0' connects here and prints every MT.
group = smsc
smsc = fake
smsc-id = {SMSC_ID}
smsc-admin-id = mt
port = {self.mt_port}
our-host = {HOST}
connect-allow-ip = {HOST}

# MO source: a short-lived 'fakesmsc -m 1' per injected MO. No MT is ever
# routed here (no message carries this smsc-id), so replies go to 'mt'.
group = smsc
smsc = fake
smsc-id = {SMSC_ID}
smsc-admin-id = mo
port = {self.mo_port}
our-host = {HOST}
connect-allow-ip = {HOST}
allowed-smsc-id = "never-route-mt-here"

group = smsbox
bearerbox-host = {HOST}
bearerbox-port = {self.smsbox_port}
sendsms-port = {self.sendsms_port}
sendsms-interface = {HOST}
mo-recode = {"true" if self.mo_recode else "false"}
{self.extra_smsbox_config}

group = sendsms-user
username = {_cfg_value(self.username)}
password = {_cfg_value(self.password)}
max-messages = {self.max_messages}
concatenation = true

group = sms-service
keyword = default
catch-all = true
{service}
{reply}
{self.extra_service_config}
"""
