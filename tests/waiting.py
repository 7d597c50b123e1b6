"""Waiting on a condition in tests: never a bare sleep, and a wait that gives up fails loudly."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
                     interval: float = 0.02) -> Any:
    """Call ``check`` (plain or async) until it returns something truthy, and return that;
    fail the test naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what} (last: {value!r})"
        await asyncio.sleep(interval)
