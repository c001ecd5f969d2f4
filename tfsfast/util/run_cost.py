"""``RunCost``: how long a signature's runs take, for deciding where the next one runs."""

from __future__ import annotations

# A run more than this many times the average is a spike: alone, it is taken for the machine
# (the thread was preempted, a page fault, a neighbour's burst), not for the model.
SPIKE_FACTOR = 4.0
# The weight of a new run in the average (an exponentially weighted moving average).
WEIGHT = 0.2


class RunCost:
    """The average seconds per run of one signature, robust to isolated spikes.

    The event loop runs a signature itself only while this average is tiny (see
    ``saved_model_bundle.INLINE_RUN_MAX_SECONDS``). On a shared machine a ~5 µs run now and then
    measures milliseconds because its thread was preempted; one such sample in a plain average
    sends every later run to a thread pool, where the GIL hand-offs inflate the measurements
    further and the average may never come back. So a sample above ``SPIKE_FACTOR`` times the
    average is ignored when it comes alone; two in a row are believed (a model that really got
    slower, or a much larger request, moves the average on its second run).

    Not locked: concurrent ``add`` calls may lose a sample, which only delays the average.
    """

    __slots__ = ("_spiked", "seconds")

    def __init__(self, seconds: float | None = None) -> None:
        """``seconds``: a first estimate (None: the first run's time is taken as it is)."""
        self.seconds = seconds
        self._spiked = False

    def add(self, elapsed: float) -> None:
        cost = self.seconds
        if cost is None:
            self.seconds = elapsed
            return
        if elapsed > SPIKE_FACTOR * cost and not self._spiked:
            self._spiked = True
            return
        self._spiked = False
        self.seconds = cost + WEIGHT * (elapsed - cost)

    def below(self, limit: float) -> bool:
        """Whether runs have been measured and average less than ``limit`` seconds."""
        cost = self.seconds
        return cost is not None and cost < limit

    def __repr__(self) -> str:
        return f"RunCost({self.seconds!r})"
