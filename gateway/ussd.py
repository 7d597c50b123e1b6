"""USSD sessions: turn a provider-neutral request into a menu step and remember the dialogue.

Sessions live in the database so any worker can serve any hop. A retried request (same
cumulative text, or same hop id) is answered from the stored reply and changes nothing.
Sessions expire after ``session_ttl_seconds`` without a hop; a phone that dials again
within ``resume_window_seconds`` of a dialogue that was cut off is offered to continue it.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from dataclasses import dataclass, replace
from typing import Callable

from gateway.logs import canonical, get_logger
from gateway.messages import UssdReply, UssdRequest, split_service_code
from gateway.phones import mask, phone_key
from gateway.settings import Settings
from menus import ussd as _menu  # noqa: F401 - registers the screens
from menus.engine import HopContext, MenuState, Reply, Screen, render, resumable_stack, resume_state, start_state, step
from menus.render import Renderer
from menus.texts import T, text
from menus.views import Directory
from gateway.sessions import RequestTrail, SessionRecord, SessionStore, input_count
from models.fastsql import SqlRunner, Tx
from models.unit_of_work import Services, UnitOfWork

log = get_logger("gateway.ussd")


class _LostRace(Exception):
    """Another copy of this hop stored the session first: roll this one back."""


@dataclass(frozen=True, slots=True)
class HopOutcome:
    """A reply plus what the hop log line and metrics need."""

    reply: UssdReply
    screen: str
    hop: int
    retry: bool = False


class UssdService:
    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        sessions: SessionStore,
        sql: SqlRunner,
        services: Services,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._sessions = sessions
        self._sql = sql
        self._services = services
        self._trail = RequestTrail(settings.security.secret_key)
        self._clock = clock
        self._renderer = Renderer(settings.ussd.screen_limit)
        self._tz = zoneinfo.ZoneInfo(settings.locale.timezone)
        self._ttl = dt.timedelta(seconds=settings.ussd.session_ttl_seconds)
        self._resume_window = dt.timedelta(seconds=settings.ussd.resume_window_seconds)
        self._secret = settings.security.secret_key
        self._default_lang = settings.ussd.default_language
        self._max_inputs = settings.ussd.max_inputs_per_hop
        self._splits: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {}

    def apology(self, lang: str | None = None) -> UssdReply:
        return UssdReply(text(lang or self._settings.ussd.default_language, T.SORRY_ERROR), end=True)

    async def handle(self, request: UssdRequest) -> HopOutcome:
        now = self._clock()
        if self._oversized(request):
            # Refused before any read or write: the session, if any, is left as it was.
            return self._refusal(None, 0)
        written = self._services.outbox.written
        try:
            # One unit of work: the hop's reads, its session write and its effects, or none.
            async with self._sql.transaction() as tx:
                outcome = await self._hop(tx, request, now)
            self._services.wake_if_written(written)
            return outcome
        except _LostRace:
            # The same hop raced in twice (an eager retry): answer what the winner stored;
            # everything this copy did rolled back.
            winner = await self._sessions.get(request.channel, request.session_id)
            assert winner is not None
            return HopOutcome(UssdReply(winner.last_reply, winner.ended), _screen_of(winner.state), winner.hops, True)

    async def _hop(self, tx: Tx, request: UssdRequest, now: dt.datetime) -> HopOutcome:
        trail = self._trail
        retry_key = request.cumulative if request.cumulative is not None else request.hop_id
        key = phone_key(request.msisdn, self._secret)
        row = await self._sessions.get(request.channel, request.session_id)
        recycled = None
        same_hop = False
        if row is not None:
            same_hop = retry_key is not None and trail.is_last(row.last_request, retry_key)
            if row.phone_key != key or (request.new and not (same_hop and row.hops == 1)):
                # The provider reused a session id for another dialogue (another phone, or a
                # fresh dial): nothing of the old one may leak into it.
                recycled, row = row, None
        if row is not None and retry_key is not None and (same_hop or self._is_older_hop(row, request)) and (
            not self._expired(row, now)
        ):
            # A copy of the last hop, or a late copy of an earlier one (``4`` after ``4*9``):
            # the stored answer, and nothing moves.
            return HopOutcome(UssdReply(row.last_reply, row.ended), _screen_of(row.state), row.hops, retry=True)
        if row is not None and (row.ended or self._expired(row, now)):
            lang = row.state.get("lang", self._settings.ussd.default_language)
            if not row.ended:
                await self._sessions.end(row.id, now)
            return HopOutcome(UssdReply(text(lang, T.SESSION_EXPIRED), True), "expired", row.hops)

        service_code, shortcut = self._split(request.service_code, await self._directory.service_codes())
        agency = await self._directory.agency_for_service_code(service_code)
        ctx = HopContext(
            directory=self._directory,
            phone=request.msisdn,
            agency=agency,
            now=now,
            tz=self._tz,
            renderer=self._renderer,
            uow=UnitOfWork(tx, self._services, now),
        )
        superseded = None  # a dropped dialogue this hop offers to resume: ended with the hop
        if row is None:
            inputs = self._opening_inputs(request, shortcut)
            if len(inputs) > self._max_inputs:
                return self._refusal(None, 0)
            reply, state, superseded = await self._open(ctx, request, inputs, key, now)
        else:
            state = MenuState.from_json(row.state)
            if request.cumulative is not None:
                inputs = trail.newest_inputs(row.last_request, request.cumulative)
            else:
                inputs = [request.latest or ""]
            if len(inputs) > self._max_inputs:
                return self._refusal(state.lang, row.hops)
            reply, state = await step(ctx, state, inputs or [""])

        stored = UssdReply(reply.text, reply.end)
        saved_state = state.to_json()
        count = input_count(request.cumulative) if request.cumulative is not None else -1
        if row is None and recycled is not None:
            saved = await self._sessions.restart(
                tx, recycled, key, saved_state, trail.started(retry_key or "", count), stored.text, stored.end, now)
        elif row is None:
            saved = await self._sessions.create(
                tx, request.channel, request.session_id, key, saved_state, trail.started(retry_key or "", count),
                stored.text, stored.end, now,
            )
        else:
            saved = await self._sessions.advance(
                tx, row, saved_state, trail.extended(row.last_request, retry_key or "", count), stored.text, stored.end, now)
        if not saved:
            raise _LostRace
        if superseded is not None:
            await self._sessions.end(superseded)  # offered once, then superseded
        await self._services.apply(tx, reply.effects, now)
        return HopOutcome(stored, state.frame.screen.value if state.stack else "goodbye", 1 if row is None else row.hops + 1)

    def _split(self, dialled: str, known: list[str]) -> tuple[str, tuple[str, ...]]:
        """``split_service_code``, remembered: a network dials a handful of strings."""
        key = (dialled, *known)
        found = self._splits.get(key)
        if found is None:
            if len(self._splits) >= 1024:
                self._splits.clear()  # dial strings with typed inputs are unbounded
            found = self._splits[key] = split_service_code(dialled, known)
        return found

    def _is_older_hop(self, row: SessionRecord, request: UssdRequest) -> bool:
        """A cumulative text the session answered before (``4`` after ``4*9``; the empty
        dial after any input): a late copy of an earlier hop."""
        cumulative = request.cumulative
        if cumulative is None or row.hops < 2:
            return False
        return cumulative == "" or self._trail.is_earlier(row.last_request, cumulative)

    def _expired(self, row: SessionRecord, now: dt.datetime) -> bool:
        return now - row.updated_at > self._ttl

    def _oversized(self, request: UssdRequest) -> bool:
        """More than one hop's worth of work: a huge text or dial string."""
        limit = self._settings.ussd.max_request_chars
        typed = request.cumulative if request.cumulative is not None else request.latest or ""
        return len(typed) > limit or len(request.service_code) > MAX_SERVICE_CODE or len(request.hop_id or "") > 128

    def _refusal(self, lang: str | None, hop: int) -> HopOutcome:
        lang = lang or self._settings.ussd.default_language
        return HopOutcome(UssdReply(text(lang, T.SORRY_TOO_LONG), True), "refused", hop)

    @staticmethod
    def _opening_inputs(request: UssdRequest, shortcut: tuple[str, ...]) -> list[str]:
        """The inputs of a session's first hop: the dial string's, then any typed ones."""
        inputs = list(shortcut)
        if request.cumulative:
            typed = request.cumulative.split("*")
            # Some aggregators repeat the dial-string inputs in the text: count them once.
            if tuple(typed[: len(inputs)]) == tuple(inputs):
                typed = typed[len(inputs) :]
            inputs += typed
        elif request.latest and not request.new:
            inputs.append(request.latest)
        return inputs

    async def _open(
        self, ctx: HopContext, request: UssdRequest, inputs: list[str], key: str, now: dt.datetime
    ) -> tuple[Reply, MenuState, int | None]:
        """The first hop's reply and state, and the dropped session it supersedes, if any."""
        lang = self._settings.ussd.default_language
        if not inputs:
            dropped = await self._dropped_dialogue(key, now, request)
            if dropped is not None:
                superseded, resumable = dropped
                if resumable is not None:
                    return (*await render(ctx, resume_state(lang, resumable)), superseded)
                return (*await render(ctx, start_state(lang)), superseded)
            return (*await render(ctx, start_state(lang)), None)
        # Render the main menu first: the dial-string inputs answer its choices.
        _, state = await render(ctx, start_state(lang))
        return (*await step(ctx, state, inputs), None)

    async def _dropped_dialogue(
        self, key: str, now: dt.datetime, request: UssdRequest
    ) -> tuple[int, MenuState | None] | None:
        """This phone's last unfinished dialogue of the resume window: its id, and its state
        if it was cut off mid-journey (worth offering to continue).

        Never this very session: a copy of its first hop that raced in may have stored it.
        Nothing is written here: the hop that stores its answer ends the old session.
        """
        if self._resume_window.total_seconds() <= 0:
            return None
        last = await self._sessions.latest_open(
            key, now - self._resume_window, exclude=(request.channel, request.session_id)
        )
        if last is None:
            return None
        state = MenuState.from_json(last.state)
        state = replace(state, stack=resumable_stack(state.stack))
        if not state.stack or len(state.stack) < 2 or state.settled or state.frame.screen is Screen.RESUME:
            return last.id, None
        return last.id, state


# Dial strings are short ("*384*1*2610300002#"); one longer than this is not a dial.
MAX_SERVICE_CODE = 64


def _screen_of(state: dict) -> str:
    stack = state.get("stack") or []
    return stack[-1]["s"] if stack else "goodbye"


def log_hop(request: UssdRequest, outcome: HopOutcome, started: float) -> None:
    """The one canonical line per USSD hop."""
    canonical("ussd_hop", {
        "channel": request.channel,
        "session": request.session_id[-12:],
        "phone": mask(request.msisdn),
        "hop": outcome.hop,
        "screen": outcome.screen,
        "end": outcome.reply.end,
        "retry": outcome.retry,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    })
