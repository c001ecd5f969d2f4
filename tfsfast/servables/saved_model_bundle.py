"""``SavedModelBundle``: the servable for a loaded SavedModel version."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from tfsfast.core.servable_id import ServableId
from tfsfast.runtime.signature import Signature
from tfsfast.runtime.validation import TIMEOUT_MESSAGE
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCost, RunCostPolicy
from tfsfast.util.status import Code, ServingError

_default_executor: ThreadPoolExecutor | None = None
_default_executor_lock = threading.Lock()


def default_executor() -> Executor:
    """The executor unbatched ``run_async`` calls use when a bundle has none of its own.

    Shared by the whole process and created on first use: 4 threads per schedulable CPU (TF
    Serving's default REST thread count). The server gives every bundle its own executor instead
    (``SessionBundleConfig.executor``), so this one serves tests and embedded use.
    """
    global _default_executor
    with _default_executor_lock:
        if _default_executor is None:
            try:
                cpus = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = os.cpu_count() or 1
            _default_executor = ThreadPoolExecutor(max(1, 4 * cpus),
                                                   thread_name_prefix="tfsfast_run")
        return _default_executor


def _deadline_timeout_ms(timeout_in_ms: int, deadline: float | None) -> int:
    """``timeout_in_ms`` narrowed to what is left before ``deadline`` (a ``time.monotonic()``
    value); DEADLINE_EXCEEDED if nothing is left."""
    if deadline is None:
        return timeout_in_ms
    remaining_ms = (deadline - time.monotonic()) * 1000.0
    if remaining_ms <= 0:
        raise ServingError(Code.DEADLINE_EXCEEDED, TIMEOUT_MESSAGE)
    left = max(1, int(remaining_ms))
    return left if timeout_in_ms <= 0 else min(timeout_in_ms, left)


class SavedModelBundle:
    """A loaded SavedModel: its runtime session, signatures and (signature-only) MetaGraphDef.

    Thread-safety: ``run`` may be called from any number of request threads at once, and
    ``run_async`` from any number of event loops. ``close`` is called by the Loader's ``unload``,
    after the manager has seen the last request handle go.

    ``executor`` runs unbatched ``run_async`` calls (None: :func:`default_executor`); the bundle
    factory sets it from ``SessionBundleConfig.executor``. ``run_cost_policy`` decides which
    unbatched runs ``run_inline`` runs on the caller's thread (the factory's, from
    ``SessionBundleConfig.run_cost_policy``). ``batching_session`` is the
    :class:`~tfsfast.batching.batching_session.BatchingSession` the factory wraps the session
    with under ``--enable_batching`` (None otherwise); the bundle owns it and closes it first.
    """

    def __init__(self, servable_id: ServableId, export_dir: str, session: Any,
                 meta_graph_def: Any = None,
                 run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY) -> None:
        self.id = servable_id
        self.export_dir = export_dir
        self.session = session
        self.signatures: Mapping[str, Signature] = session.signatures
        self.meta_graph_def = meta_graph_def if meta_graph_def is not None else (
            session.meta_graph_def)
        self.executor: Executor | None = None
        self.batching_session: Any = None
        # Signature key -> seconds per unbatched run, judged by the policy.
        self.run_cost_policy = run_cost_policy
        self._run_cost: dict[str, RunCost] = {}

    def run(self, signature_key: str, inputs: Mapping[str, np.ndarray],
            output_aliases: Sequence[str] | None = None,
            timeout_in_ms: int = 0) -> dict[str, np.ndarray]:
        """Runs a signature, blocking the calling thread; batched when batching is on (so TF
        Serving's warmup and any thread-pool caller share the queues). Never call it on an
        event loop's thread: use :meth:`run_async` there."""
        batching = self.batching_session
        if batching is not None:
            waiter: concurrent.futures.Future[dict[str, np.ndarray]] = concurrent.futures.Future()
            if batching.schedule(signature_key, inputs, output_aliases, timeout_in_ms, None,
                                 waiter) is not None:
                return waiter.result()
        return self.session.run(signature_key, inputs, output_aliases, timeout_in_ms)

    async def run_async(self, signature_key: str, inputs: Mapping[str, np.ndarray],
                        output_aliases: Sequence[str] | None = None, timeout_in_ms: int = 0,
                        deadline: float | None = None) -> dict[str, np.ndarray]:
        """Runs a signature without blocking the event loop; returns ``{output alias: array}``.

        ``inputs`` maps input aliases to numpy arrays, which must stay unmodified until this
        returns. ``output_aliases`` selects outputs (None: all). ``timeout_in_ms`` > 0 bounds the
        run as TF's ``RunOptions.timeout_in_ms`` (under batching: counted from the enqueue);
        ``deadline`` is a ``time.monotonic()`` value after which the request is not started.
        Errors are ``ServingError`` with TF Serving's codes and messages, e.g. UNAVAILABLE
        ``The batch scheduling queue to which this task was submitted is full`` at once when the
        batch queue is full, DEADLINE_EXCEEDED when the deadline passes before the run.

        With batching, a batchable run is enqueued on its (version, signature) queue and awaited
        (cancelling this coroutine drops the request before it runs); other runs, and all runs
        without batching, go to ``executor`` (a cancelled call that has not started never runs).
        """
        batching = self.batching_session
        loop = asyncio.get_running_loop()
        if batching is not None:
            future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
            task = batching.schedule(signature_key, inputs, output_aliases, timeout_in_ms,
                                     deadline, future)
            if task is not None:
                try:
                    return await future
                except asyncio.CancelledError:
                    task.cancelled = True  # the batch thread drops it if it has not run yet
                    raise
        outputs = self.run_inline(signature_key, inputs, output_aliases, timeout_in_ms,
                                  deadline)
        if outputs is not None:
            return outputs
        return await loop.run_in_executor(
            self.executor or default_executor(), self._run_before_deadline, signature_key,
            inputs, output_aliases, timeout_in_ms, deadline)

    def run_inline(self, signature_key: str, inputs: Mapping[str, np.ndarray],
                   output_aliases: Sequence[str] | None = None, timeout_in_ms: int = 0,
                   deadline: float | None = None) -> dict[str, np.ndarray] | None:
        """Runs now, on the calling thread, if that is the cheapest way; else returns None.

        It is when batching is off and the signature's measured runs take less than the
        ``run_cost_policy``'s ``inline_run_max_seconds`` (an event loop can then answer without
        a thread hop, a task or a future). None means: call :meth:`run_async`. Errors as
        :meth:`run_async`.
        """
        if self.batching_session is not None:
            return None
        cost = self._run_cost.get(signature_key)
        if cost is None or not cost.allows():
            return None
        return self._run_before_deadline(signature_key, inputs, output_aliases, timeout_in_ms,
                                         deadline)

    def _run_before_deadline(self, signature_key: str, inputs: Mapping[str, np.ndarray],
                             output_aliases: Sequence[str] | None, timeout_in_ms: int,
                             deadline: float | None) -> dict[str, np.ndarray]:
        timeout_in_ms = _deadline_timeout_ms(timeout_in_ms, deadline)
        cost = self._run_cost.get(signature_key)
        if cost is None:
            cost = self._run_cost.setdefault(signature_key, RunCost(self.run_cost_policy))
        return cost.timed(self.session.run, signature_key, inputs, output_aliases,
                          timeout_in_ms)

    def close(self) -> None:
        """Fails requests still queued for batching (UNAVAILABLE), then closes the session."""
        try:
            if self.batching_session is not None:
                self.batching_session.close()
        finally:
            self.session.close()

    def __repr__(self) -> str:
        return f"SavedModelBundle({self.id}, {self.export_dir!r})"
