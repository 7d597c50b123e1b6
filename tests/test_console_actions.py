"""The console's action pages through the real app over real HTTP, on a real database: mark
ready with the exact pickup SMS previewed first, mark collected, re-send, the bulk alert
with a result per code, the postal requests waiting, today's alerts and their delivery
states. Each change goes through models.desk_actions (one transaction, its audit record,
channel "console"); another agency's dossier is a 404 or an ``other_agency`` result and is
never changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import zoneinfo

from models.entities import DossierStatus
from models.seed import DEMO_PHONE
import pytest

from tests.test_console import A, B, EN, VI, Desk, _outbound, client, desk  # noqa: F401 - fixtures

_PREVIEW_RE = re.compile(r'<pre class="sms-preview" id="preview-text">(.*?)</pre>', re.S)
_PARTS_RE = re.compile(r'<dd id="preview-parts">(\d+)</dd>')
_DIGEST_RE = re.compile(r'name="preview" value="([0-9a-f]+)"')
UNKNOWN = "000.99.99.H99-260101-0001"


@pytest.fixture
def console_settings(settings):
    # Plain HTTP (no Secure cookie), and no dispatcher: an SMS stays as the test left it
    # (the browser test sees the dispatcher send one).
    return settings.replace(console={"secure_cookies": False}, sms={"run_dispatcher": False})


async def _dossier(sql, agency: str, status: DossierStatus, *, phone: str | None = None) -> tuple[int, str]:
    query = ("SELECT d.id, d.code FROM dossier d JOIN agency a ON a.id=d.agency_id WHERE a.code=? AND d.status=?"
             + (" AND d.applicant_phone=?" if phone else "") + " ORDER BY d.id LIMIT 1")
    rows = await sql.fetch(query, (agency, int(status), *((phone,) if phone else ())))
    assert rows, (agency, status)
    return rows[0][0], rows[0][1]


async def _status(desk: Desk, code: str) -> DossierStatus:
    return DossierStatus((await desk.sql.fetch("SELECT status FROM dossier WHERE code=?", (code,)))[0][0])


async def _pickups(desk: Desk, dossier_id: int) -> list[tuple]:
    return await desk.sql.fetch(
        "SELECT o.id, o.text, o.parts, o.status FROM dossier_notification n JOIN outbound_sms o ON o.id=n.outbound_sms_id"
        " WHERE n.dossier_id=? AND n.kind=? ORDER BY o.id", (dossier_id, "pickup"))


async def _audit(desk: Desk, code: str) -> list[tuple]:
    return await desk.sql.fetch("SELECT actor, channel, action FROM audit_log WHERE target=? ORDER BY id", (code,))


async def _preview(desk: Desk, code: str) -> tuple[str, int, str]:
    response = await desk.client.get(f"/console/dossiers/{code}/ready")
    body = await response.text()
    assert response.status == 200, body
    return (html.unescape(_PREVIEW_RE.search(body).group(1)), int(_PARTS_RE.search(body).group(1)),
            _DIGEST_RE.search(body).group(1))


async def _flash(desk: Desk, location: str) -> str:
    body = await (await desk.client.get(location)).text()
    found = re.search(r'<p class="flash" role="status">(.*?)</p>', body, re.S)
    return html.unescape(found.group(1)) if found else ""


# -- mark ready, with the preview ---------------------------------------------------------------


async def test_mark_ready_sends_exactly_the_previewed_sms(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    dossier_id, code = await _dossier(desk.sql, A, DossierStatus.PROCESSING, phone=DEMO_PHONE)
    page = await (await desk.client.get(f"/console/dossiers/{code}")).text()
    assert 'id="action-ready"' in page and 'id="action-collected"' not in page and 'id="action-resend"' not in page
    text, parts, digest = await _preview(desk, code)
    tail = "".join(code.split("-")[1:])
    assert (code in text or tail in text) and parts >= 1
    preview_page = await (await desk.client.get(f"/console/dossiers/{code}/ready")).text()
    assert "0987***228" in preview_page and "0987542228" not in preview_page and "+84987542228" not in preview_page
    # Looking changes nothing.
    assert await _status(desk, code) is DossierStatus.PROCESSING and await _pickups(desk, dossier_id) == []

    # A confirm without the preview's mark (or with another text's) shows the preview again, sends nothing.
    again = await desk.post(f"/console/dossiers/{code}/ready")
    assert again.status == 200 and 'id="preview-text"' in await again.text()
    stale = await desk.post(f"/console/dossiers/{code}/ready", {"preview": "0" * 32})
    assert stale.status == 200 and VI["preview_changed"] in await stale.text()
    # Without the CSRF token: refused.
    assert (await desk.post(f"/console/dossiers/{code}/ready", {"preview": digest}, csrf=None)).status == 403
    assert await _status(desk, code) is DossierStatus.PROCESSING and await _pickups(desk, dossier_id) == []
    assert await _audit(desk, code) == []

    done = await desk.post(f"/console/dossiers/{code}/ready", {"preview": digest})
    assert done.status == 303 and done.headers["Location"] == f"/console/dossiers/{code}"
    assert await _status(desk, code) is DossierStatus.READY
    [(sms_id, queued_text, queued_parts, sms_status)] = await _pickups(desk, dossier_id)
    assert queued_text == text and queued_parts == parts and sms_status == "queued"
    assert await _audit(desk, code) == [("mai", "console", "status_changed"), ("mai", "console", "alert_sent")]
    assert await _flash(desk, done.headers["Location"]) == VI["done_ready"].format(code=code, parts=parts)
    page = await (await desk.client.get(f"/console/dossiers/{code}")).text()
    assert 'id="action-ready"' not in page and 'id="action-collected"' in page and 'id="action-resend"' in page
    assert VI["kind_pickup"] in page and VI["state_queued"] in page


async def test_the_preview_is_in_the_applicants_own_language(desk, clock):
    """A citizen who chose English gets the alert in English: the preview shows that text."""
    await desk.sign_in("mai", now=clock.now)
    dossier_id, code = await _dossier(desk.sql, A, DossierStatus.PROCESSING, phone=DEMO_PHONE)
    async with desk.sql.transaction() as tx:
        await desk.services.citizens.register(tx, DEMO_PHONE, "x" * 64, "228", "Nguyen Van A", "en", clock.now)
    text, parts, digest = await _preview(desk, code)
    async with desk.sql.transaction() as tx:
        vietnamese = await desk.services.dossiers.preview(tx, dossier_id, DossierStatus.READY, "vi")
    assert text != desk.services.outbox.prepared(vietnamese, "vi").text
    assert (await desk.post(f"/console/dossiers/{code}/ready", {"preview": digest})).status == 303
    [(_, queued_text, queued_parts, _)] = await _pickups(desk, dossier_id)
    assert (queued_text, queued_parts) == (text, parts)


async def test_resend_then_collected(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    dossier_id, code = await _dossier(desk.sql, A, DossierStatus.READY)
    # Ready already: the preview says a confirm sends the alert again.
    assert VI["preview_again"] in await (await desk.client.get(f"/console/dossiers/{code}/ready")).text()
    resent = await desk.post(f"/console/dossiers/{code}/resend")
    assert resent.status == 303
    [(_, _, parts, _)] = await _pickups(desk, dossier_id)
    assert await _flash(desk, resent.headers["Location"]) == VI["done_resent"].format(code=code, parts=parts)
    assert await _audit(desk, code) == [("mai", "console", "alert_resent")]

    collected = await desk.post(f"/console/dossiers/{code}/collected")
    assert collected.status == 303
    assert await _status(desk, code) is DossierStatus.DELIVERED
    assert await _flash(desk, collected.headers["Location"]) == VI["done_collected"].format(code=code)
    assert await _audit(desk, code) == [("mai", "console", "alert_resent"), ("mai", "console", "status_changed")]
    page = await (await desk.client.get(f"/console/dossiers/{code}")).text()
    assert VI["actions_none"] in page
    for button in ("action-ready", "action-collected", "action-resend"):
        assert f'id="{button}"' not in page

    # A stale page's buttons change nothing now.
    for action in ("collected", "resend", "ready"):
        again = await desk.post(f"/console/dossiers/{code}/{action}")
        assert again.status == 303, action
        assert await _flash(desk, again.headers["Location"]) == VI["refused_collected"].format(code=code)
    assert len(await _audit(desk, code)) == 2 and len(await _pickups(desk, dossier_id)) == 1
    assert VI["preview_collected"] in await (await desk.client.get(f"/console/dossiers/{code}/ready")).text()


async def test_collected_or_resend_before_ready_changes_nothing(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    dossier_id, code = await _dossier(desk.sql, A, DossierStatus.PROCESSING)
    for action in ("collected", "resend"):
        refused = await desk.post(f"/console/dossiers/{code}/{action}")
        assert refused.status == 303
        assert await _flash(desk, refused.headers["Location"]) == VI["refused_not_ready"].format(code=code)
    assert await _status(desk, code) is DossierStatus.PROCESSING
    assert await _audit(desk, code) == [] and await _pickups(desk, dossier_id) == []


async def test_another_agencys_dossier_cannot_be_acted_on(desk, clock):
    await desk.sign_in("mai", agencies=(A,), now=clock.now)
    theirs_id, theirs = await _dossier(desk.sql, B, DossierStatus.PROCESSING)
    async with desk.sql.transaction() as tx:  # the real digest of their text: still refused
        text = await desk.services.dossiers.preview(tx, theirs_id, DossierStatus.READY)
    digest = hashlib.sha256(desk.services.outbox.prepared(text).text.encode()).hexdigest()[:32]
    assert (await desk.client.get(f"/console/dossiers/{theirs}/ready")).status == 404
    for action, data in (("ready", {"preview": digest}), ("collected", {}), ("resend", {})):
        refused = await desk.post(f"/console/dossiers/{theirs}/{action}", data)
        assert refused.status == 404 and theirs not in await refused.text(), action
    assert await _status(desk, theirs) is DossierStatus.PROCESSING
    assert await _audit(desk, theirs) == [] and await _pickups(desk, theirs_id) == []
    # An admin may.
    await desk.post("/console/logout")
    await desk.sign_in("boss", role="admin", agencies=(), now=clock.now)
    _, _, digest = await _preview(desk, theirs)
    assert (await desk.post(f"/console/dossiers/{theirs}/ready", {"preview": digest})).status == 303
    assert await _status(desk, theirs) is DossierStatus.READY


# -- bulk alert -------------------------------------------------------------------------------


async def test_bulk_alert_gives_a_result_per_code(desk, clock):
    await desk.sign_in("mai", agencies=(A,), now=clock.now)
    first_id, first = await _dossier(desk.sql, A, DossierStatus.PROCESSING)
    ready_id, ready = await _dossier(desk.sql, A, DossierStatus.READY)
    _, collected = await _dossier(desk.sql, A, DossierStatus.DELIVERED)
    theirs_id, theirs = await _dossier(desk.sql, B, DossierStatus.PROCESSING)
    shared = (await desk.sql.fetch("SELECT tail FROM dossier GROUP BY tail, agency_id HAVING COUNT(*) > 1"))[0][0]
    pasted = f"{first}, {ready}\n{collected}\t{theirs};{UNKNOWN}\r\nhello {shared}\n\n{first}"
    form = await (await desk.client.get("/console/alerts/bulk")).text()
    assert 'id="bulk-form"' in form and 'name="codes"' in form
    response = await desk.post("/console/alerts/bulk", {"codes": pasted})
    body = await response.text()
    assert response.status == 200
    rows = re.findall(r'<tr class="verdict-([a-z_]+)"><td class="code">([^<]*)</td>', body)
    assert rows == [("sent", first), ("sent", ready), ("already_collected", collected), ("other_agency", theirs),
                    ("unknown", UNKNOWN), ("unknown", "hello"), ("ambiguous", shared)]
    for verdict in ("sent", "already_collected", "other_agency", "unknown", "ambiguous"):
        assert VI[f"verdict_{verdict}"] in body
    assert VI["bulk_summary"].format(count=7) in body
    assert f'href="/console/dossiers/{theirs}"' not in body and f'href="/console/dossiers/{first}"' in body
    # One transaction: the changes are there, the other agency's dossier untouched, each audited.
    assert await _status(desk, first) is DossierStatus.READY and len(await _pickups(desk, first_id)) == 1
    assert len(await _pickups(desk, ready_id)) == 1  # ready already: the alert again
    assert await _status(desk, collected) is DossierStatus.DELIVERED
    assert await _status(desk, theirs) is DossierStatus.PROCESSING and await _pickups(desk, theirs_id) == []
    assert await _audit(desk, theirs) == [] and await _audit(desk, collected) == []
    assert ("mai", "console", "alert_sent") in await _audit(desk, first)
    assert await _audit(desk, ready) == [("mai", "console", "alert_resent")]


async def test_bulk_alert_refuses_an_empty_or_too_long_list(desk, clock):
    from models.desk_actions import MAX_BULK

    await desk.sign_in("mai", now=clock.now)
    first_id, first = await _dossier(desk.sql, A, DossierStatus.PROCESSING)
    empty = await desk.post("/console/alerts/bulk", {"codes": " ,\n "})
    assert empty.status == 200 and VI["bulk_empty"] in await empty.text()
    too_many = await desk.post("/console/alerts/bulk", {"codes": "\n".join([first] * (MAX_BULK + 1))})
    body = await too_many.text()
    assert VI["bulk_too_many"].format(count=MAX_BULK + 1, limit=MAX_BULK) in body
    assert await _status(desk, first) is DossierStatus.PROCESSING and await _pickups(desk, first_id) == []
    assert (await desk.post("/console/alerts/bulk", {"codes": first}, csrf=None)).status == 403
    assert await _status(desk, first) is DossierStatus.PROCESSING


# -- postal requests and today's alerts -------------------------------------------------------


async def _postal(desk: Desk, dossier_id: int, status: str, at: dt.datetime, channel: str = "sms") -> None:
    await desk.sql.fetch("INSERT INTO postal_request (dossier_id, channel, status, requested_at) VALUES (?,?,?,?)",
                         (dossier_id, channel, status, at))


async def test_postal_page_shows_only_the_clerks_agencies_waiting_requests(desk, clock):
    now = clock.now
    ours_id, ours = await _dossier(desk.sql, A, DossierStatus.READY, phone=DEMO_PHONE)
    handled_id, handled = await _dossier(desk.sql, A, DossierStatus.PROCESSING)
    theirs_id, theirs = await _dossier(desk.sql, B, DossierStatus.PROCESSING)
    await _postal(desk, ours_id, "waiting", now - dt.timedelta(hours=2), "ussd")
    await _postal(desk, handled_id, "handled", now - dt.timedelta(hours=3))
    await _postal(desk, theirs_id, "waiting", now - dt.timedelta(hours=1))
    await desk.sign_in("mai", agencies=(A,), now=now)
    body = await (await desk.client.get("/console/postal")).text()
    assert f'href="/console/dossiers/{ours}"' in body and "USSD" in body and "0987***228" in body
    assert theirs not in body and handled not in body
    for clear in ("0987542228", "+84987542228"):
        assert clear not in body
    await desk.post("/console/logout")
    await desk.sign_in("hoa", agencies=(B,), now=now)
    body = await (await desk.client.get("/console/postal")).text()
    assert theirs in body and ours not in body
    await desk.post("/console/logout")
    await desk.sign_in("boss", role="admin", agencies=(), now=now)
    body = await (await desk.client.get("/console/postal")).text()
    assert theirs in body and ours in body and handled not in body
    assert body.index(ours) < body.index(theirs)  # oldest first


async def test_a_postal_request_marked_handled_leaves_the_list_once(desk, clock):
    now = clock.now
    ours_id, ours = await _dossier(desk.sql, A, DossierStatus.READY, phone=DEMO_PHONE)
    theirs_id, theirs = await _dossier(desk.sql, B, DossierStatus.PROCESSING)
    await _postal(desk, ours_id, "waiting", now - dt.timedelta(hours=2))
    await _postal(desk, theirs_id, "waiting", now - dt.timedelta(hours=1))
    await desk.sign_in("mai", agencies=(A,), now=now)
    page = await (await desk.client.get("/console/postal")).text()
    assert f'action="/console/postal/{ours}/handled"' in page and theirs not in page
    done = await desk.post(f"/console/postal/{ours}/handled")
    assert done.status == 303 and done.headers["Location"] == "/console/postal"
    assert await _flash(desk, "/console/postal") == VI["postal_done"].format(code=ours)
    state = await desk.sql.fetch("SELECT status, handled_at FROM postal_request WHERE dossier_id=?", (ours_id,))
    assert state[0][0] == "handled" and state[0][1] is not None
    assert ("mai", "console", "postal_handled") in await _audit(desk, ours)
    assert ours not in await (await desk.client.get("/console/postal")).text()
    # A second click (another tab) changes nothing and says so.
    again = await desk.post(f"/console/postal/{ours}/handled")
    assert await _flash(desk, again.headers["Location"]) == VI["postal_not_waiting"].format(code=ours)
    assert [a for a in await _audit(desk, ours) if a[2] == "postal_handled"] == [("mai", "console", "postal_handled")]
    # Another agency's request: the same 404 as an unknown code, and it still waits.
    assert (await desk.post(f"/console/postal/{theirs}/handled")).status == 404
    assert (await desk.sql.fetch("SELECT status FROM postal_request WHERE dossier_id=?", (theirs_id,)))[0][0] == "waiting"
    assert await _audit(desk, theirs) == []


async def test_postal_page_says_when_none_waits(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    body = await (await desk.client.get("/console/postal")).text()
    assert VI["postal_none"] in body


async def test_todays_alerts_show_their_delivery_state(desk, clock, console_settings):
    now = clock.now
    zone = zoneinfo.ZoneInfo(console_settings.locale.timezone)
    midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time(0), tzinfo=zone)
    await desk.sign_in("mai", agencies=(A,), now=now)
    assert VI["today_none"] in await (await desk.client.get("/console/alerts/today")).text()
    # One through the console: queued.
    sent_id, sent = await _dossier(desk.sql, A, DossierStatus.PROCESSING)
    _, _, digest = await _preview(desk, sent)
    assert (await desk.post(f"/console/dossiers/{sent}/ready", {"preview": digest})).status == 303
    # Others as the dispatcher and the provider's reports leave them.
    ids = [row[0] for row in await desk.sql.fetch(
        "SELECT d.id FROM dossier d JOIN agency a ON a.id=d.agency_id WHERE a.code=? AND d.status=? ORDER BY d.id",
        (A, int(DossierStatus.READY)))]
    await _outbound(desk.sql, ids[0], "pickup", "delivered", now, sent=True, delivered=True)
    await _outbound(desk.sql, ids[1], "pickup", "failed", now, error="absent subscriber")
    await _outbound(desk.sql, ids[2], "pickup", "sent", now - dt.timedelta(days=2), sent=True)  # not today
    # The day is the commune's: a second before its midnight is yesterday.
    await _outbound(desk.sql, ids[2], "pickup", "sent", midnight - dt.timedelta(seconds=1), sent=True)
    theirs_id, theirs = await _dossier(desk.sql, B, DossierStatus.PROCESSING)
    await _outbound(desk.sql, theirs_id, "pickup", "delivered", now, sent=True, delivered=True)
    await _outbound(desk.sql, ids[2], "status", "sent", now, sent=True)  # not a pickup alert
    await desk.sql.fetch(
        "INSERT INTO dossier_notification (dossier_id, kind, status, outbound_sms_id, skipped, created_at)"
        " VALUES (?,?,?,?,?,?)", (ids[2], "pickup", 9, None, "recipient opted out", now))
    response = await desk.client.get("/console/alerts/today")
    body = await response.text()
    assert response.status == 200
    states = re.findall(r'<tr class="sms-([a-z]+)">', body)
    assert sorted(states) == ["delivered", "failed", "queued", "skipped"], states
    assert "absent subscriber" in body and "recipient opted out" in body
    assert f'href="/console/dossiers/{sent}"' in body and theirs not in body
    for state in ("state_delivered", "state_failed", "state_queued", "state_skipped"):
        assert VI[state] in body
    for clear in ("0987542228", "+84987542228"):
        assert clear not in body
    english = await desk.post("/console/lang", {"lang": "en", "next": "/console/alerts/today"})
    body = html.unescape(await (await desk.client.get(english.headers["Location"])).text())
    assert EN["today_title"] in body and EN["state_delivered"] in body


async def test_new_pages_are_in_the_menu(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    body = await (await desk.client.get("/console/")).text()
    for path in ("/console/alerts/bulk", "/console/alerts/today", "/console/postal"):
        assert f'href="{path}"' in body


async def test_no_citizen_phone_in_the_actions_log_lines(desk, clock, log_stream):
    await desk.sign_in("mai", now=clock.now)
    _, code = await _dossier(desk.sql, A, DossierStatus.PROCESSING, phone=DEMO_PHONE)
    _, _, digest = await _preview(desk, code)
    await desk.post(f"/console/dossiers/{code}/ready", {"preview": digest})
    await desk.post(f"/console/dossiers/{code}/resend")
    await desk.post(f"/console/dossiers/{code}/collected")
    await desk.post("/console/alerts/bulk", {"codes": f"{code} 0987542228 +84987542228"})
    for path in ("/console/alerts/today", "/console/postal"):
        await desk.client.get(path)
    lines = log_stream.getvalue().splitlines()
    assert sum('"console_action"' in line for line in lines) == 3
    assert any('"console_bulk_alert"' in line for line in lines)
    for line in lines:
        for clear in ("0987542228", "987542228", "+84987542228"):
            assert clear not in line, line
    audit_text = " ".join(" ".join(map(str, row)) for row in await desk.sql.fetch("SELECT * FROM audit_log"))
    assert "987542228" not in audit_text
