"""Registered citizens: identity kept as keyed hashes, PINs as slow salted hashes.

BEING BUILT (issue 8): the interface below is what the menus and SMS keywords call.
"""

from __future__ import annotations

from typing import Callable


class CitizenService:
    def __init__(
        self,
        settings,  # gateway.settings.PinSettings (read by attribute)
        id_key: str,
        phone_key: Callable[[str], str],
    ) -> None:
        self._settings = settings
        self._id_key = id_key
        self._phone_key = phone_key
