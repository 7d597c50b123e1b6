"""The USSD menu engine: named screens, a navigation stack, and one pure step per hop.

A screen is a symbol of ``Screen`` with a content function (what it shows) and, for
screens that take typed text, a text handler. Both are registered with decorators and
the registry is checked when ``menus.ussd`` finishes loading: a screen without content,
or a prompt without a handler, fails at import.

``step(state, inputs, ctx)`` is the whole engine: it reads through ``ctx.directory`` and
returns the reply (with the effects the inputs asked for) and the new state. It writes
nothing: the caller stores the state and applies the effects in one unit of work.

A text handler, or a screen's ``on_enter`` (run when a menu choice opens the screen),
answers with a ``Frame`` to open, a ``Notice`` to re-prompt, or an ``Outcome`` that adds
effects (``models.effects``) to either: issue an OTP, create a citizen, send an SMS.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Mapping, Union

from menus.render import Content, Renderer
from menus.texts import LANGUAGES, T, text
from menus.views import AgencyView, Directory
from models.effects import Effect


class Screen(enum.Enum):
    MAIN = "main"
    RESUME = "resume"
    LOOKUP_ENTER = "lookup_enter"
    LOOKUP_CHOOSE = "lookup_choose"
    LOOKUP_RESULT = "lookup_result"
    REGISTER = "register"  # entry 2: consent, or a PIN for a registered phone
    REGISTER_DECLINED = "register_declined"
    REGISTER_ID = "register_id"
    REGISTER_NAME = "register_name"
    REGISTER_BIRTH = "register_birth"
    REGISTER_OTP = "register_otp"
    REGISTER_PIN = "register_pin"
    REGISTER_PIN_AGAIN = "register_pin_again"
    REGISTER_DONE = "register_done"
    REGISTER_ALREADY = "register_already"
    PIN_RESET = "pin_reset"
    PIN_RESET_OTP = "pin_reset_otp"
    PIN_NEW = "pin_new"
    PIN_NEW_AGAIN = "pin_new_again"
    PIN_SET_DONE = "pin_set_done"
    MY_DOSSIERS = "my_dossiers"  # entry 3: the PIN first
    MY_DOSSIER_LIST = "my_dossier_list"
    MY_LOCKED = "my_locked"
    MY_NOT_REGISTERED = "my_not_registered"
    MY_NO_PIN = "my_no_pin"
    DELETE_DATA = "delete_data"
    DELETE_OTP = "delete_otp"
    DELETE_DONE = "delete_done"
    DELETE_NOTHING = "delete_nothing"
    POSTAL_DONE = "postal_done"  # the applicant asked for a "toan trinh" result by post
    PROCEDURES = "procedures"
    PROCEDURE_DETAIL = "procedure_detail"
    PICKUP = "pickup"
    HELP = "help"
    HELP_SMS = "help_sms"


# Screens a PIN opened. A dialogue resumed in a new session is cut back to before the
# first of them, so the PIN is asked again: the new session may not be the citizen's hand.
BEHIND_PIN = frozenset({Screen.MY_DOSSIER_LIST})


def resumable_stack(stack: tuple["Frame", ...]) -> tuple["Frame", ...]:
    """What of a dropped dialogue's stack a new session may continue."""
    for index, frame in enumerate(stack):
        if frame.screen in BEHIND_PIN:
            return stack[:index]
    return stack


class Command(enum.Enum):
    """Choices that act on the dialogue itself rather than open a screen."""

    TOGGLE_LANGUAGE = "lang"
    RESUME = "resume"
    RESTART = "restart"
    NEXT_PAGE = "next"
    PREV_PAGE = "prev"


@dataclass(frozen=True, slots=True)
class Frame:
    screen: Screen
    args: Mapping[str, Any] = field(default_factory=dict)
    page: int = 0


Target = Union[Frame, Command]


@dataclass(frozen=True, slots=True)
class Notice:
    """A re-prompt: stay on the screen and say what was wrong."""

    key: T
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's decision with its effects: open ``next`` (a ``Frame``), re-prompt (a
    ``Notice``), or stay where the caller is (``None``)."""

    next: "Frame | Notice | None"
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True, slots=True)
class HopContext:
    """What a step may know about the hop: who calls, through which code, and when."""

    directory: Directory
    phone: str  # caller, E.164
    agency: AgencyView | None  # behind the dialled code
    now: dt.datetime  # aware, UTC
    tz: dt.tzinfo
    renderer: Renderer | None = None  # USSD only; SMS answers are not screens
    # The hop's unit of work (models.unit_of_work.UnitOfWork), for steps whose answer
    # depends on a change (an OTP check, a PIN attempt); None where nothing may change.
    uow: Any = None


@dataclass(frozen=True, slots=True)
class MenuState:
    lang: str
    stack: tuple[Frame, ...]
    # The choices of the page on screen: key -> target. Kept so an input needs no re-read.
    choices: Mapping[str, Target] = field(default_factory=dict)
    # The stack of a dropped dialogue the caller may continue (on the RESUME screen).
    resumable: tuple[Frame, ...] = ()
    # The caller reached the end of a journey (the last page of an answer): a dropped
    # dialogue in this state is not worth offering to continue.
    settled: bool = False

    @property
    def frame(self) -> Frame:
        return self.stack[-1]

    # JSON form, for the session store. Defaults are left out (an empty ``a``, page 0, no
    # choices, nothing resumable, not settled): a live session's row stays small, and a
    # state written before (with every key) reads back the same.
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"lang": self.lang, "stack": [_frame_json(f) for f in self.stack]}
        if self.choices:
            data["choices"] = {k: _target_json(t) for k, t in self.choices.items()}
        if self.resumable:
            data["resumable"] = [_frame_json(f) for f in self.resumable]
        if self.settled:
            data["settled"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MenuState":
        choices = data.get("choices")
        resumable = data.get("resumable")
        return cls(
            data["lang"],
            tuple([_frame_from(f) for f in data["stack"]]),
            {k: _target_from(t) for k, t in choices.items()} if choices else {},
            tuple([_frame_from(f) for f in resumable]) if resumable else (),
            data.get("settled", False),
        )


_SCREENS: dict[str, "Screen"] = {screen.value: screen for screen in Screen}
_COMMANDS: dict[str, "Command"] = {command.value: command for command in Command}
_EMPTY: Mapping[str, Any] = {}


def _frame_json(frame: Frame) -> dict[str, Any]:
    data: dict[str, Any] = {"s": frame.screen.value}
    if frame.args:
        data["a"] = dict(frame.args)
    if frame.page:
        data["p"] = frame.page
    return data


def _frame_from(data: Mapping[str, Any]) -> Frame:
    screen = _SCREENS.get(data["s"])
    if screen is None:
        screen = Screen(data["s"])  # raises ValueError, as an unknown screen always has
    return Frame(screen, data.get("a") or {}, data.get("p", 0))


def _target_json(target: Target) -> dict[str, Any]:
    return {"cmd": target.value} if isinstance(target, Command) else {"go": _frame_json(target)}


def _target_from(data: Mapping[str, Any]) -> Target:
    if "cmd" in data:
        command = _COMMANDS.get(data["cmd"])
        return command if command is not None else Command(data["cmd"])
    return _frame_from(data["go"])


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    end: bool
    effects: tuple[Effect, ...] = ()


ContentFn = Callable[[HopContext, str, Mapping[str, Any]], Awaitable[Content[Target]]]
TextFn = Callable[[HopContext, str, Mapping[str, Any], str], Awaitable[Union[Frame, Notice, Outcome]]]
EnterFn = Callable[[HopContext, str, Mapping[str, Any]], Awaitable[Union[Frame, Notice, Outcome]]]


@dataclass(slots=True)
class _ScreenDef:
    content: ContentFn | None = None
    on_text: TextFn | None = None
    on_enter: EnterFn | None = None


_REGISTRY: dict[Screen, _ScreenDef] = {screen: _ScreenDef() for screen in Screen}


def content(screen: Screen) -> Callable[[ContentFn], ContentFn]:
    def register(fn: ContentFn) -> ContentFn:
        _REGISTRY[screen].content = fn
        return fn

    return register


def on_text(screen: Screen) -> Callable[[TextFn], TextFn]:
    def register(fn: TextFn) -> TextFn:
        _REGISTRY[screen].on_text = fn
        return fn

    return register


def on_enter(screen: Screen) -> Callable[[EnterFn], EnterFn]:
    """Run when a menu choice opens ``screen``: may redirect, re-prompt, or add effects."""

    def register(fn: EnterFn) -> EnterFn:
        _REGISTRY[screen].on_enter = fn
        return fn

    return register


def check_registry() -> None:
    """Every screen has content; every screen that takes text has a handler."""
    missing = [s.name for s, d in _REGISTRY.items() if d.content is None]
    if missing:
        raise ImportError(f"screens without content: {missing}")


def start_state(lang: str) -> MenuState:
    return MenuState(lang=lang, stack=(Frame(Screen.MAIN),))


def resume_state(lang: str, dropped: MenuState) -> MenuState:
    """Offer to continue a dropped dialogue (a new session from the same phone)."""
    return MenuState(lang=dropped.lang or lang, stack=(Frame(Screen.RESUME),), resumable=dropped.stack)


async def screen_content(ctx: HopContext, lang: str, frame: Frame) -> Content[Target]:
    fn = _REGISTRY[frame.screen].content
    assert fn is not None  # check_registry() ran at import
    return await fn(ctx, lang, frame.args)


async def render(ctx: HopContext, state: MenuState, notice: Notice | None = None) -> tuple[Reply, MenuState]:
    """Show the frame on top of the stack; remember its choices."""
    frame = state.frame
    shown = await screen_content(ctx, state.lang, frame)
    notice_text = None
    if notice:
        # Echoed input (a mistyped code) is shortened so the re-prompt always fits.
        values = {k: clip_echo(v) if isinstance(v, str) else v for k, v in notice.values.items()}
        notice_text = text(state.lang, notice.key, **values)
    assert ctx.renderer is not None
    page, page_no = ctx.renderer.page(shown, state.lang, notice_text, frame.page)
    choices: dict[str, Target] = {key: item.target for key, item in page.choices.items()}
    if page.has_next:
        choices["9"] = Command.NEXT_PAGE
    if page.has_prev:
        choices["8"] = Command.PREV_PAGE
    stack = state.stack if page_no == frame.page else state.stack[:-1] + (Frame(frame.screen, frame.args, page_no),)
    settled = not shown.prompt and not shown.items and not page.has_next
    return Reply(page.text, shown.end), MenuState(state.lang, stack, choices, state.resumable, settled)


def clip_echo(value: str, limit: int = 40) -> str:
    """Typed input echoed back (a re-prompt, an SMS answer) is shortened: it is unbounded."""
    return value if len(value) <= limit else value[: limit - 2] + ".."


async def step(ctx: HopContext, state: MenuState, inputs: list[str]) -> tuple[Reply, MenuState]:
    """Apply the caller's inputs in order, then show where they lead."""
    notice: Notice | None = None
    effects: list[Effect] = []
    for raw in inputs:
        state, notice, done = await _apply(ctx, state, raw.strip())
        effects += done
        if not state.stack:
            return Reply(text(state.lang, T.GOODBYE), True, tuple(effects)), state
        if len(inputs) > 1:
            # Shortcut or caught-up inputs: each one is read against the screen it answers.
            reply, state = await render(ctx, state, notice)
            if reply.end:
                return Reply(reply.text, reply.end, tuple(effects)), state
    reply, state = await render(ctx, state, notice)
    return Reply(reply.text, reply.end, tuple(effects)) if effects else reply, state


_NO_EFFECTS: tuple[Effect, ...] = ()


async def _apply(ctx: HopContext, state: MenuState, value: str) -> tuple[MenuState, Notice | None, tuple[Effect, ...]]:
    frame = state.frame
    if value == "00":
        return _with_stack(state, (Frame(Screen.MAIN),)), None, _NO_EFFECTS
    if value == "0":
        return _with_stack(state, state.stack[:-1]), None, _NO_EFFECTS
    target = state.choices.get(value)
    if target is Command.NEXT_PAGE or target is Command.PREV_PAGE:
        delta = 1 if target is Command.NEXT_PAGE else -1
        return _replace_top(state, replace(frame, page=frame.page + delta)), None, _NO_EFFECTS
    if target is Command.TOGGLE_LANGUAGE:
        other = LANGUAGES[(LANGUAGES.index(state.lang) + 1) % len(LANGUAGES)]
        return replace(state, lang=other), None, _NO_EFFECTS
    if target is Command.RESUME and state.resumable:
        return replace(state, stack=state.resumable, resumable=()), None, _NO_EFFECTS
    if target is Command.RESTART:
        return replace(state, stack=(Frame(Screen.MAIN),), resumable=()), None, _NO_EFFECTS
    if isinstance(target, Frame):
        enter = _REGISTRY[target.screen].on_enter
        if enter is None:
            return _with_stack(state, state.stack + (target,)), None, _NO_EFFECTS
        return _follow(state, await enter(ctx, state.lang, target.args), default=target)
    handler = _REGISTRY[frame.screen].on_text
    if handler is not None and value:
        return _follow(state, await handler(ctx, state.lang, frame.args, value), default=None)
    return state, Notice(T.INVALID_CHOICE), _NO_EFFECTS


def _follow(
    state: MenuState, decided: Frame | Notice | Outcome, default: Frame | None
) -> tuple[MenuState, Notice | None, tuple[Effect, ...]]:
    """Where a handler's decision leads: ``default`` is the frame an ``on_enter`` opens when
    its outcome says only effects (``Outcome(None, ...)``)."""
    effects = _NO_EFFECTS
    if isinstance(decided, Outcome):
        decided, effects = decided.next if decided.next is not None else default, decided.effects
    if isinstance(decided, Notice):
        return state, decided, effects
    if decided is None:
        return state, None, effects
    return _with_stack(state, state.stack + (decided,)), None, effects


def _with_stack(state: MenuState, stack: tuple[Frame, ...]) -> MenuState:
    """``replace(state, stack=stack)``, without ``dataclasses.replace``'s per-call introspection."""
    return MenuState(state.lang, stack, state.choices, state.resumable, state.settled)


def _replace_top(state: MenuState, frame: Frame) -> MenuState:
    return _with_stack(state, state.stack[:-1] + (frame,))
