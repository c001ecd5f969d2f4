"""The batching queue's mutex and condition variable, pure Python: a ``threading.Condition``.

A separate implementation from the compiled :mod:`tfsfast.batching._condition` (a pthread mutex
and condition variable that C code takes and waits on without a Python call), not the same
source compiled: each is what its own language does well. The batching queue, one source built
twice, uses this one as Python and the compiled one compiled (its ``.pxd`` cimports it under
this module's name).

Contract (both): ``acquire``/``release`` the mutex (not reentrant); with it held,
``wait_until(deadline)`` releases it until ``notify`` or ``notify_all`` wakes the waiter or
``deadline`` (a :func:`monotonic` time; past ones return at once, infinite or more than
``LONGEST_TIMED_WAIT`` away ones wait untimed) comes, then takes it again before returning;
spurious wake-ups are possible. ``notify`` wakes one waiter, ``notify_all`` every one; both are
called with the mutex held. A thread waiting for the mutex or in ``wait_until`` does not hold
the GIL.
"""

from __future__ import annotations

import threading
import time

# Waits longer than this are waits without a timeout (and never overflow a C time_t).
LONGEST_TIMED_WAIT = 86400.0 * 365

monotonic = time.monotonic


class Condition:
    """A mutex and a condition variable on it."""

    __slots__ = ("_condition",)

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())

    def acquire(self) -> None:
        self._condition.acquire()

    def release(self) -> None:
        self._condition.release()

    def notify(self) -> None:
        self._condition.notify()

    def notify_all(self) -> None:
        self._condition.notify_all()

    def wait_until(self, deadline: float) -> None:
        timeout = deadline - monotonic()
        self._condition.wait(None if timeout > LONGEST_TIMED_WAIT else max(timeout, 0.0))
