"""Waiting in tests: for the thing itself, never for a fixed time.

A test that needs what another thread, process or event loop does waits for that: an event, a
future, a joined thread or, where nothing signals it (a server process, a log line, a directory),
a condition checked until it holds. A fixed sleep is wrong both ways: too short on a loaded
machine (the test fails for nothing), too long everywhere else (the suite is slow for nothing).

Every wait here is bounded, so a broken build fails instead of hanging. The bound is generous: a
passing test never comes near it, and it is not an assertion on how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# Far above any wait of a passing test, even on a loaded 2-core machine running the suite
# beside other work; below pytest's per-test timeout, so the failure names what was awaited.
WAIT_SECONDS = 60.0

# The first checks come quickly (most conditions hold within milliseconds), later ones back off
# so that a condition that costs something (an HTTP request, a log scan) is not hammered.
_FIRST_INTERVAL = 0.001
_MAX_INTERVAL = 0.05


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_SECONDS,
               detail: Callable[[], str] | None = None) -> None:
    """Returns as soon as ``condition()`` is true.

    Raises ``AssertionError`` ``gave up waiting for <what> after <timeout> s`` (followed by
    ``detail()``, e.g. a server's log) if it is still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    interval = _FIRST_INTERVAL
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(_gave_up(what, timeout, detail))
        time.sleep(interval)
        interval = min(interval * 2, _MAX_INTERVAL)


async def wait_until_async(condition: Callable[[], object], what: str,
                           timeout: float = WAIT_SECONDS,
                           detail: Callable[[], str] | None = None) -> None:
    """:func:`wait_until` on an event loop: the loop keeps running between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    interval = _FIRST_INTERVAL
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(_gave_up(what, timeout, detail))
        await asyncio.sleep(interval)
        interval = min(interval * 2, _MAX_INTERVAL)


def _gave_up(what: str, timeout: float, detail: Callable[[], str] | None) -> str:
    message = f"gave up waiting for {what} after {timeout:g} s"
    return message if detail is None else f"{message}:\n{detail()}"
