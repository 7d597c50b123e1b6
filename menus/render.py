"""The one USSD screen renderer: lays content out in pages that fit the screen limit.

Every screen goes through here, so the limit is enforced in one place: free text is
split across pages ("9 Tiep"), numbered choices are packed at most seven to a page
(8 and 9 page back and forth, 0 goes back, 00 goes home), labels from data that are
too long are shortened, and data is reduced to plain ASCII so a screen is always GSM-7.
Fixed texts that cannot fit are a bug: ``ScreenTooLong`` names them (a test renders
every screen to prove none does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from models.sms_text import Encoding, unaccent, units
from menus.texts import T, text

Target = TypeVar("Target")
MAX_ITEMS_PER_PAGE = 7
_SPACES = re.compile(r"\s+")


class ScreenTooLong(ValueError):
    """A screen whose fixed text cannot fit the limit."""


def screen_text(value: str) -> str:
    """Data made fit for a screen: unaccented, one line, plain ASCII."""
    return _SPACES.sub(" ", unaccent(value)).strip().encode("ascii", "replace").decode()


@dataclass(frozen=True, slots=True)
class Item(Generic[Target]):
    label: str
    target: Target


@dataclass(frozen=True, slots=True)
class Content(Generic[Target]):
    """What a screen shows, before layout."""

    title: str
    body: str = ""
    items: tuple[Item[Target], ...] = ()
    prompt: bool = False  # the caller types free text next
    end: bool = False  # the dialogue ends with this screen
    nav: bool = True  # show 0 (back) and 00 (home)


@dataclass(frozen=True, slots=True)
class Page(Generic[Target]):
    text: str
    choices: dict[str, Item[Target]] = field(default_factory=dict)
    has_prev: bool = False
    has_next: bool = False


def _fits(candidate: str, limit: int) -> bool:
    return units(candidate, Encoding.GSM7) <= limit


def _shorten(value: str, budget: int) -> str:
    if units(value, Encoding.GSM7) <= budget:
        return value
    while value and units(value + "..", Encoding.GSM7) > budget:
        value = value[:-1]
    return value.rstrip() + ".."


def _cut(word: str, budget: int) -> tuple[str, str]:
    """The longest head of ``word`` that fits ``budget`` units, and the rest."""
    used = 0
    for index, char in enumerate(word):
        used += units(char, Encoding.GSM7)
        if used > budget:
            return word[:index], word[index:]
    return word, ""


class Renderer:
    CACHE_SIZE = 4096

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cache: dict[tuple, list[Page[int]]] = {}

    def pages(self, content: Content[Target], lang: str, notice: str | None = None) -> list[Page[Target]]:
        """Lay ``content`` out in pages; ``notice`` (an error) takes the title's place."""
        items = content.items
        return [
            Page(p.text, {k: items[i.target] for k, i in p.choices.items()}, p.has_prev, p.has_next)
            for p in self._cached_layout(content, lang, notice)
        ]

    def page(self, content: Content[Target], lang: str, notice: str | None, number: int) -> tuple[Page[Target], int]:
        """Page ``number`` of ``pages()`` (clamped to the pages there are), and which one it
        is: a hop shows one page, so only that one is built."""
        layout = self._cached_layout(content, lang, notice)
        number = min(max(number, 0), len(layout) - 1)
        laid = layout[number]
        items = content.items
        return Page(laid.text, {k: items[i.target] for k, i in laid.choices.items()}, laid.has_prev,
                    laid.has_next), number

    def _cached_layout(self, content: Content[Target], lang: str, notice: str | None) -> list[Page[int]]:
        # Layout depends only on the texts, so it is cached; the targets come from this content.
        key = (lang, notice, content.title, content.body, tuple([i.label for i in content.items]),
               content.prompt, content.end, content.nav)
        layout = self._cache.get(key)
        if layout is None:
            indexed = Content(content.title, content.body, tuple(Item(i.label, n) for n, i in enumerate(content.items)),
                              content.prompt, content.end, content.nav)
            layout = self._layout(indexed, lang, notice)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = layout
        return layout

    def _layout(self, content: Content[int], lang: str, notice: str | None) -> list[Page[int]]:
        title = screen_text(notice or content.title)
        body_words = screen_text(content.body).split()
        labels = [screen_text(item.label) for item in content.items]
        if content.end or content.prompt:
            return [self._single(content, lang, title, " ".join(body_words), labels)]

        nav_tail = [text(lang, T.NAV_BACK), text(lang, T.NAV_HOME)] if content.nav else []
        single = self._try_single(content, lang, title, body_words, labels, nav_tail)
        if single is not None:
            return [single]

        # Several pages: reserve room for the longest title (an error notice may replace it)
        # and for the fullest navigation line, so every page's numbering stays put.
        title_room = max(units(title, Encoding.GSM7), units(text(lang, T.INVALID_CHOICE), Encoding.GSM7))
        nav_full = " ".join([text(lang, T.NAV_PREV), text(lang, T.NAV_NEXT), *nav_tail])
        room = self.limit - title_room - 1 - units(nav_full, Encoding.GSM7) - 1
        if room < 20:
            raise ScreenTooLong(f"no room for content under {content.title!r}")

        chunks: list[tuple[str, list[int]]] = []
        line = ""
        for word in body_words:
            while units(word, Encoding.GSM7) > room:  # a "word" longer than a page
                head, word = _cut(word, room)
                if line:
                    chunks.append((line, []))
                chunks.append((head, []))
                line = ""
            candidate = f"{line} {word}" if line else word
            if units(candidate, Encoding.GSM7) <= room:
                line = candidate
                continue
            # Break after the last full sentence when that still fills most of the page.
            cut = line.rfind(". ")
            if cut >= room * 0.6:
                chunks.append((line[: cut + 1], []))
                rest = line[cut + 2 :]
                if units(f"{rest} {word}", Encoding.GSM7) <= room:
                    line = f"{rest} {word}"
                else:
                    chunks.append((rest, []))
                    line = word
            else:
                chunks.append((line, []))
                line = word
        used = units(line, Encoding.GSM7) if line else -1
        current: tuple[str, list[int]] = (line, [])
        for index, label in enumerate(labels):
            number = len(current[1]) + 1
            entry = _shorten(f"{number} {label}", room)
            cost = units(entry, Encoding.GSM7) + 1
            if len(current[1]) >= MAX_ITEMS_PER_PAGE or used + cost > room:
                chunks.append(current)
                current = ("", [])
                used = -1
                entry = _shorten(f"1 {label}", room)
                cost = units(entry, Encoding.GSM7) + 1
            current[1].append(index)
            used += cost
        if current[0] or current[1] or not chunks:
            chunks.append(current)

        pages: list[Page[Target]] = []
        for number, (chunk_text, indices) in enumerate(chunks):
            has_prev, has_next = number > 0, number < len(chunks) - 1
            nav = ([text(lang, T.NAV_PREV)] if has_prev else []) + ([text(lang, T.NAV_NEXT)] if has_next else [])
            lines = [title] + ([chunk_text] if chunk_text else [])
            choices = {}
            for key, index in enumerate(indices, start=1):
                lines.append(_shorten(f"{key} {labels[index]}", room))
                choices[str(key)] = content.items[index]
            lines.append(" ".join(nav + nav_tail))
            page_text = "\n".join(line for line in lines if line)
            if not _fits(page_text, self.limit):  # pragma: no cover - guarded by the room sums
                raise ScreenTooLong(f"page {number} of {content.title!r} is {len(page_text)} long")
            pages.append(Page(page_text, choices, has_prev, has_next))
        return pages

    def _try_single(self, content, lang, title, body_words, labels, nav_tail) -> Page | None:
        if len(labels) > MAX_ITEMS_PER_PAGE:
            return None
        lines = [title, " ".join(body_words)] + [f"{n} {label}" for n, label in enumerate(labels, 1)]
        lines.append(" ".join(nav_tail))
        page_text = "\n".join(line for line in lines if line)
        if not _fits(page_text, self.limit):
            return None
        choices = {str(n): item for n, item in enumerate(content.items, 1)}
        return Page(page_text, choices)

    def _single(self, content, lang, title, body, labels) -> Page:
        """End and prompt screens cannot page: they must fit as they are."""
        nav = " ".join([text(lang, T.NAV_BACK), text(lang, T.NAV_HOME)]) if content.nav and not content.end else ""
        lines = [title, body] + [f"{n} {label}" for n, label in enumerate(labels, 1)] + [nav]
        page_text = "\n".join(line for line in lines if line)
        if not _fits(page_text, self.limit):
            if content.end:
                # An apology or goodbye that is too long still ends the dialogue, shortened.
                page_text = _shorten(page_text, self.limit)
            else:
                raise ScreenTooLong(f"prompt {content.title!r} needs {len(page_text)} > {self.limit}")
        return Page(page_text, {str(n): item for n, item in enumerate(content.items, 1)})
