"""Pure-Python twin of ``_request_counts``: where a request path counts ``request_count``,
``request_latency`` and ``runtime_latency``.

Why the compiled module does not use the metrics' cells: a cell update is a Python call that
finds the thread's shard, and the compiled fast paths answer a request in a few microseconds,
of which that would be a measurable part. Instead it keeps C counters and a C histogram per
(model, API) in each ``RequestCounts`` (one per thread that answers requests: an event loop's
REST fast path, the gRPC completion-queue loop), written with the GIL held and no Python call in
between (so never torn, even when grpcio's threads share the gRPC one), and hands them to the
DEFAULT registry at each collection, summed with the cells of the same labels
(``register_partial``); a collection may miss the request in flight, which the next one sees.
This twin, which is not about speed, records straight into the metrics' cells (sharded per
thread): the page reads the same either way.

The contract (both implementations):

- ``RequestCounts(entrypoint)``: the counts of one request path; ``entrypoint`` is the
  latency's label (``REST``, ``GRPC``). What it counted stays in the metrics for the life of
  the process (a counter's series never goes down).
- ``ok_counts(model_name, api)``: the ``OkCounts`` of requests for that model and API (made on
  first use; callers keep it for the model they serve again and again).
- ``OkCounts.record(start)``: one request answered OK, begun at ``start`` (``now_ns()``): a
  ``request_count{model_name, "OK"}`` and ``request_latency{model_name, api, entrypoint}`` in
  µs (the sampler's buckets: ``bisect_right`` on its limits, the last bucket taking the rest);
  ``record_elapsed(nanoseconds)`` the same for a duration the caller measured.
- ``error(model_name, code)``: one request failed with ``code`` (``request_count`` labelled
  with the code's name).
- ``runtime_counts(model_name, api)``: an ``OkCounts`` whose ``record``/``record_elapsed`` add
  a successful run to ``runtime_latency{model_name, api, "TF1"}`` (and count no request).
"""

from __future__ import annotations

import time

from tfsfast.monitoring.metrics import CounterCell, SamplerCell
from tfsfast.monitoring.serving_metrics import REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY
from tfsfast.util.status import Code

__all__ = ["OkCounts", "RequestCounts", "now_ns"]

now_ns = time.monotonic_ns


class OkCounts:
    """The OK requests (or runs) of one (model, API): their count and latencies."""

    __slots__ = ("_count", "_latency")

    def __init__(self, count: CounterCell | None, latency: SamplerCell) -> None:
        self._count = count
        self._latency = latency

    def record(self, start: int) -> None:
        """One answered OK, begun at ``start`` (``now_ns()``)."""
        self.record_elapsed(time.monotonic_ns() - start)

    def record_elapsed(self, nanoseconds: int) -> None:
        """One that took ``nanoseconds``."""
        if self._count is not None:
            self._count.increment_by(1)
        self._latency.add(nanoseconds // 1000)


class RequestCounts:
    """One request path's counts (see the module docstring)."""

    def __init__(self, entrypoint: str) -> None:
        self.entrypoint = entrypoint

    def ok_counts(self, model_name: str, api: str) -> OkCounts:
        return OkCounts(REQUEST_COUNT.get_cell(model_name, "OK"),
                        REQUEST_LATENCY.get_cell(model_name, api, self.entrypoint))

    def runtime_counts(self, model_name: str, api: str) -> OkCounts:
        return OkCounts(None, RUNTIME_LATENCY.get_cell(model_name, api, "TF1"))

    def error(self, model_name: str, code: int) -> None:
        REQUEST_COUNT.get_cell(model_name, Code(code).name).increment_by(1)
