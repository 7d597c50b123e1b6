"""Every log line is JSON and redacted: the gateway's own, aiohttp's and asyncio's.

aiohttp's server logger writes a traceback when a handler raises or when the HTTP parser
chokes on a request, and the parser's message quotes the request line (a Kannel get-url
carries the caller's number). These tests make the real app and the real server produce
those lines, in process and as ``python -m gateway run``, and read what was written.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from urllib.parse import unquote_plus

from gateway import app as gateway_app
from gateway import logs
from gateway.app import create_app
from tests.waiting import eventually as wait_until
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
# The caller's number in every spelling the tests send, and what must never appear.
PHONE_DIGITS = "987542228"
MASKED = "+8498*****28"
ID_NUMBER = "030201001234"


def json_lines(text: str) -> list[dict]:
    """Every line parsed as a JSON object: a line that is not one fails here, quoted."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}\n--- whole log ---\n{text[-4000:]}")
        assert isinstance(entry, dict), line
        lines.append(entry)
    return lines


def assert_no_personal_data(text: str) -> None:
    assert PHONE_DIGITS not in text, text[-4000:]
    assert ID_NUMBER not in text, text[-4000:]
    # Nor spelled with separators or percent-encoded ("%2B84%20987%20542%20228", UCS-2 "%009%008").
    squeezed = re.sub(r"[\s.\-()/\x00+]", "", unquote_plus(text))
    assert PHONE_DIGITS not in squeezed, text[-4000:]


async def raw_exchange(host: str, port: int, request: bytes) -> bytes:
    """What a hostile client sends, byte for byte (aiohttp's client would refuse to)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        # The head of the answer: the server may keep the socket open while unread bytes remain.
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()


# The longest request line the app lets aiohttp's parser take (Kannel's get-url carries the text).
LINE_LIMIT = getattr(gateway_app, "MAX_REQUEST_LINE", 8190)

# Requests the framework itself refuses, each quoting the caller's number in the parser's message.
MALFORMED = {
    "bad char in the query": b"GET /sms/kannel/inbound?from=84987542228\x01&to=8088&text=TG HTTP/1.1\r\n"
                             b"Host: gateway\r\n\r\n",
    "request line too long": b"GET /sms/kannel/inbound?from=84987542228&to=8088&text=" + b"A" * (LINE_LIMIT + 1000)
                             + b" HTTP/1.1\r\nHost: gateway\r\n\r\n",
    "bad char after a spaced number": b"GET /sms/kannel/inbound?to=8088&from=%2B84%20987%20542%20228&text=TG\x01 HTTP/1.1\r\n"
                                      b"Host: gateway\r\n\r\n",
    "bad char after a UCS-2 text": b"GET /sms/kannel/inbound?from=x&coding=2&text=%000%009%008%007%005%004%002%002%002%008"
                                   b"\x01 HTTP/1.1\r\nHost: gateway\r\n\r\n",
    "bad header": b"GET /sms/kannel/inbound?from=0987542228 HTTP/1.1\r\nHost: gateway\r\n"
                  b"Caller 0987542228\r\n\r\n",
}


async def test_a_handler_traceback_is_one_json_line_with_the_exception_field_masked(
    aiohttp_client, settings, clock, log_stream
):
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(f"lookup failed for {request.query['from']} (id {ID_NUMBER})")

    app = create_app(settings, clock=clock)  # the real app and its middleware, one more route
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)

    response = await client.get("/boom", params={"from": "0987542228"})
    assert response.status == 500
    assert (await response.json())["error"] == "internal error"  # JSON, even for a bug
    await wait_until(lambda: "request_failed" in log_stream.getvalue(), what="the gateway's error line")

    rendered = log_stream.getvalue()
    entries = json_lines(rendered)
    errors = [e for e in entries if e.get("event") == "request_failed"]
    assert len(errors) == 1, entries
    error = errors[0]
    assert error["level"] == "error" and error["path"] == "/boom"
    assert error["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: lookup failed for " + MASKED in error["exception"]
    assert "03**********" in error["exception"]
    assert error["request_id"]  # bound by the app's middleware: the traceback belongs to a request
    assert_no_personal_data(rendered)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_request_the_parser_chokes_on_logs_json_and_no_number(client, log_stream, kind):
    answer = await raw_exchange(client.server.host, client.server.port, MALFORMED[kind])
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
    await wait_until(lambda: "aiohttp.server" in log_stream.getvalue(), what="aiohttp.server's line")

    rendered = log_stream.getvalue()
    entries = json_lines(rendered)
    errors = [e for e in entries if e.get("logger") == "aiohttp.server"]
    assert len(errors) == 1, entries
    exception = errors[0]["exception"]
    assert "Traceback" in exception and "aiohttp.http_exceptions" in exception
    assert MASKED in exception  # the parser quoted the request line: the number is there, masked
    assert_no_personal_data(rendered)


async def test_an_asyncio_error_is_one_json_line_masked(log_stream):
    logging.getLogger("asyncio").error("Task exception was never retrieved (caller 0987542228, id %s)", ID_NUMBER)
    # And the way asyncio itself reports a lost task's exception, with its traceback.
    try:
        raise ValueError("no dossier for 84987542228")
    except ValueError as exc:
        error = exc
    asyncio.get_running_loop().default_exception_handler(
        {"message": "Task exception was never retrieved", "exception": error}
    )

    rendered = log_stream.getvalue()
    entries = json_lines(rendered)
    assert len(entries) == 2, rendered
    first, second = entries
    assert first["logger"] == "asyncio" and first["level"] == "error"
    assert first["event"] == f"Task exception was never retrieved (caller {MASKED}, id 03**********)"
    assert "exception" not in first
    assert second["logger"] == "asyncio" and second["event"] == "Task exception was never retrieved"
    assert second["exception"].endswith(f"ValueError: no dossier for {MASKED}")
    assert_no_personal_data(rendered)


def test_library_noise_below_warning_stays_out_and_a_broken_library_call_stays_json(log_stream):
    logging.getLogger("tortoise").info("connected to 0987542228")
    logging.getLogger("aiohttp.access").info("GET /sms/kannel/inbound?from=0987542228")
    # A library's broken call: the stdlib would print "--- Logging error ---" and a traceback.
    # Only through our handler (pytest's own capture handler on the root would raise here).
    broken = logging.getLogger("somelib")
    broken.propagate = False
    broken.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logs._StreamHandler)]
    try:
        assert len(broken.handlers) == 1
        broken.error("%d callers", "not a number")
    finally:
        broken.handlers, broken.propagate = [], True
    entries = json_lines(log_stream.getvalue())
    assert entries == [{"event": "logging_error", "level": "error", "logger": "somelib"}]


def test_the_console_format_masks_a_library_traceback_too():
    stream = io.StringIO()
    logs.configure("info", "console", stream=stream)
    try:
        try:
            raise RuntimeError("caller 0987542228")
        except RuntimeError:
            logging.getLogger("aiohttp.server").exception("Error handling request from 127.0.0.1")
            logs.get_logger("t").exception("own_failure")
    finally:
        logs.configure("info", "json")
    rendered = stream.getvalue()
    assert "Error handling request" in rendered and "own_failure" in rendered
    assert rendered.count("RuntimeError: caller " + MASKED) == 2
    assert PHONE_DIGITS not in rendered


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        ("GET /sms/kannel/inbound?from=84987542228&to=8088", f"GET /sms/kannel/inbound?from={MASKED}&to=8088"),
        ("?from=0987542228&text=TG", f"?from={MASKED}&text=TG"),
        ("?from=%2B84987542228", f"?from={MASKED}"),
        ("?to=8088&from=%2B84%20987%20542%20228&text=TG", f"?to=8088&from={MASKED}&text=TG"),
        ("from=+84+987+542+228&to=8088", f"from={MASKED}&to=8088"),
        ("?text=Goi%2084987542228%20nhe", f"?text=Goi%20{MASKED}%20nhe"),
        ("?text=%000%009%008%007%005%004%002%002%002%008", f"?text={MASKED}"),
        (f"called 0987542228 about id {ID_NUMBER}", f"called {MASKED} about id 03**********"),
        ("?to=8088&text=HS+000.32.22.H23-261108-0020", "?to=8088&text=HS+000.32.22.H23-261108-0020"),
        ("latency 12.345678901 ms", "latency 12.345678901 ms"),
    ],
)
def test_numbers_are_masked_in_every_spelling_a_url_gives_them(logged, expected):
    assert logs.redact(None, "info", {"detail": logged})["detail"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4f2a-9c1d", "4f2a-9c1d"),
        ("kannel:smsbox.1-20260509T0735", "kannel:smsbox.1-20260509T0735"),
        ("a" * 64, "a" * 64),
        ("a" * 65, None),
        ("has space", None),
        ("semi;colon", None),
        ("<script>", None),
        ("ph\u00f4ne", None),
        ("0987542228\n{\"event\": \"forged\"}", None),
        ("", None),
        (None, None),
        ("0987542228", MASKED),
        ("+84987542228", None),  # "+" is outside the charset: refused, not just masked
        ("req-84987542228-1", f"req-{MASKED}-1"),
        (f"id-{ID_NUMBER}", "id-03**********"),
        ("batch.123456789", "batch.12*******"),
        ("12345678", "12345678"),  # eight digits: a counter, not a number of anyone's
    ],
)
def test_safe_request_id(raw, expected):
    assert logs.safe_request_id(raw) == expected


def test_a_request_id_is_scrubbed_in_the_log_even_if_nothing_checked_it(log_stream):
    """Defence in depth: request_id is not a safe key any more."""
    import structlog

    structlog.contextvars.bind_contextvars(request_id="0987542228")
    try:
        logs.get_logger("t").info("note")
    finally:
        structlog.contextvars.clear_contextvars()
    (entry,) = json_lines(log_stream.getvalue())
    assert entry["request_id"] == MASKED


async def test_a_caller_chosen_request_id_with_a_number_is_never_logged_in_clear(client, log_stream):
    response = await client.get("/sms/kannel/inbound", params={"from": "0987542228", "to": "8088", "text": "TG"},
                                headers={"X-Request-Id": "0987542228"})
    assert response.status < 500
    rendered = log_stream.getvalue()
    json_lines(rendered)
    assert_no_personal_data(rendered)


async def test_the_gateways_own_ussd_hop_line_is_unchanged(client, phone, log_stream):
    caller = phone("0987542228")
    await caller.dial()
    await caller.press("1")
    hops = [e for e in json_lines(log_stream.getvalue()) if e["event"] == "ussd_hop"]
    assert [h["hop"] for h in hops] == [1, 2]
    assert [h["screen"] for h in hops] == ["main", "lookup_enter"]
    for hop in hops:
        assert hop["phone"] == MASKED and hop["channel"] == "at" and hop["level"] == "info"
        assert hop["end"] is False and hop["retry"] is False and isinstance(hop["latency_ms"], float)
        assert hop["session"] == caller.session_id[-12:] and hop["request_id"] and hop["timestamp"]
        assert "logger" not in hop  # a structlog line, not a stdlib one
    assert_no_personal_data(log_stream.getvalue())


async def test_the_access_log_is_a_json_line_without_the_query(settings, clock, log_stream):
    # As cmd_run serves it (web.run_app builds this runner): the real app, our access logger.
    # (aiohttp's TestServer drops server kwargs, so not the client fixture here.)
    runner = web.AppRunner(create_app(settings, clock=clock), access_log_class=logs.AccessLogger)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/sms/kannel/inbound",
                                params={"from": "0987542228", "to": "8088", "text": "HS 2611230001"}) as response:
                status = response.status
        await raw_exchange("127.0.0.1", port, MALFORMED["bad char in the query"])
        await wait_until(lambda: log_stream.getvalue().count('"http_request"') >= 2, what="two access lines")
    finally:
        await runner.cleanup()

    assert status < 500
    rendered = log_stream.getvalue()
    access = [e for e in json_lines(rendered) if e["event"] == "http_request"]
    inbound = next(e for e in access if e["path"] == "/sms/kannel/inbound" and e["status"] == status)
    assert inbound["method"] == "GET" and inbound["remote"] == "127.0.0.1"
    assert isinstance(inbound["duration_ms"], float) and isinstance(inbound["bytes"], int)
    assert inbound["request_id"]  # the access line belongs to the request's other lines
    assert any(e["status"] == 400 for e in access)
    assert "?" not in json.dumps(access) and "2611230001" not in json.dumps(access)
    assert_no_personal_data(rendered)


async def test_python_m_gateway_run_writes_only_redacted_json_to_stderr(tmp_path):
    port = free_port()
    settings_path = tmp_path / "settings.toml"
    settings_path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[database]\nurl = "sqlite://{tmp_path / "gateway.sqlite3"}"\n'
        '[logging]\nlevel = "info"\nformat = "auto"\n'  # stderr is a pipe: auto must mean JSON
    )
    env = {**os.environ, "GATEWAY_SECRET_KEY": "logs-test"}
    for name in ("GATEWAY_DATABASE_URL", "GATEWAY_WEBHOOK_TOKEN", "GATEWAY_SETTINGS", "PYTHONASYNCIODEBUG"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--settings", str(settings_path), "run"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    statuses: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, f"gateway exited: {process.communicate()[1].decode()[-3000:]}"
                assert time.monotonic() < deadline, "gateway did not answer /healthz within 30 s"
                try:
                    async with http.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)

            async with http.get(base + "/sms/kannel/inbound?from=0987542228&to=8088&text=TG",
                                headers={"X-Request-Id": "0987542228"}) as response:
                statuses["kannel inbound"] = response.status
            async with http.get(base + "/sms/kannel/inbound?from=%2B84%20987%20542%20228&to=8088&text=TG") as response:
                statuses["kannel inbound, spaced"] = response.status
            async with http.post(base + "/ussd/at", data={"sessionId": "logs-1", "serviceCode": "*384#",
                                                          "phoneNumber": "0987542228", "text": ""}) as response:
                statuses["ussd"] = response.status
            async with http.post(base + "/ussd/at", data=b"--x\r\nbroken",
                                 headers={"Content-Type": "multipart/form-data"}) as response:
                statuses["multipart without boundary"] = response.status
            async with http.get(base + "/0987542228") as response:
                statuses["unknown path"] = response.status
        for kind, request in MALFORMED.items():
            answer = await raw_exchange("127.0.0.1", port, request)
            statuses[kind] = int(answer.split(b" ", 2)[1])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate(timeout=10)

    assert process.returncode == 0, stderr.decode()[-3000:]
    assert statuses["kannel inbound"] == 200 and statuses["unknown path"] == 404, statuses
    assert all(statuses[kind] == 400 for kind in MALFORMED), statuses
    text = stderr.decode()
    entries = json_lines(text)
    assert stdout.decode().strip() == ""
    assert_no_personal_data(text)
    assert "0987542228" not in text and "84%20987" not in text
    events = [e["event"] for e in entries]
    assert "serving" in events
    server_errors = [e for e in entries if e.get("logger") == "aiohttp.server"]
    assert len(server_errors) >= len(MALFORMED), events
    assert all(e["exception"].startswith("Traceback") for e in server_errors)
    assert any(MASKED in e["exception"] for e in server_errors)
    access = [e for e in entries if e["event"] == "http_request"]
    # One line per request: the USSD hop's is its own canonical ussd_hop line, not an access line.
    assert len(access) >= len(statuses), events  # /healthz too, the answered hop not
    assert {e["path"] for e in access} >= {"/healthz", "/sms/kannel/inbound"}
    assert not any(e["path"] == "/ussd/at" and e["status"] == 200 for e in access) and "ussd_hop" in events
    assert not any("?" in e["path"] for e in access)


def test_a_server_that_cannot_start_says_so_in_json(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings_path = tmp_path / "settings.toml"
        settings_path.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
            f'[database]\nurl = "sqlite://{tmp_path / "gateway.sqlite3"}"\n'
        )
        env = {**os.environ, "GATEWAY_SECRET_KEY": "logs-test"}
        for name in ("GATEWAY_DATABASE_URL", "GATEWAY_SETTINGS"):
            env.pop(name, None)
        done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings_path), "run"],
                              cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1, done.stderr.decode()[-3000:]
    entries = json_lines(done.stderr.decode())
    failed = [e for e in entries if e["event"] == "server_failed"]
    assert len(failed) == 1 and "Traceback" in failed[0]["exception"] and "OSError" in failed[0]["exception"]


def test_the_canonical_line_is_the_same_chain_as_any_line(log_stream):
    """``logs.canonical`` (the hop's fast path) renders what structlog's chain renders: the
    bound context, level, a timestamp in the same format, and the same redaction."""
    import structlog

    structlog.contextvars.bind_contextvars(request_id="req-0987542228")
    try:
        logs.canonical("probe", {"phone": "0987542228", "session": "s-84987542228", "n": 1})
        logs.get_logger("t").info("probe", phone="0987542228", session="s-84987542228", n=1)
    finally:
        structlog.contextvars.clear_contextvars()
    fast, slow = json_lines(log_stream.getvalue())[-2:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fast["timestamp"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", slow["timestamp"])
    fast.pop("timestamp"), slow.pop("timestamp")
    assert fast == slow and fast["level"] == "info" and fast["n"] == 1
    assert_no_personal_data(log_stream.getvalue())


def test_the_canonical_line_obeys_the_level_and_works_unconfigured(log_stream):
    stream = io.StringIO()
    logs.configure("warning", "json", stream=stream)
    logs.canonical("quiet", {"n": 1})
    assert stream.getvalue() == ""
    logs.configure("info", "json", stream=stream)
    logs.canonical("loud", {"big": 2**70, 3: "non-string key"})  # what orjson refuses: the stdlib encoder
    line = json.loads(stream.getvalue())
    assert line["event"] == "loud" and line["big"] == 2**70


def test_the_canonical_line_goes_to_structlogs_capture_in_tests():
    """structlog.testing.capture_logs swaps the processors for one that records and drops
    the event: the hop's fast line must be recorded too, not raise out of the hop."""
    from structlog.testing import capture_logs

    logs.configure("info", "json", stream=io.StringIO())
    try:
        with capture_logs() as captured:
            logs.canonical("ussd_hop", {"hop": 1, "phone": "+84987542228"})
        assert [entry["event"] for entry in captured] == ["ussd_hop"]
    finally:
        logs.configure("info", "json")
