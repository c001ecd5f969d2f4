"""``BatchingSession``: runs a loaded model's signatures in batches (TF Serving's BatchingSession).

One queue per signature of the model version (TF Serving keys queues by the signature's input and
output tensors; here by signature key), all in the server's :class:`SharedBatchScheduler`. A run
is batched when it names a signature with inputs, feeds exactly that signature's inputs and asks
for all of its outputs (in any order, or none named); any other run *bypasses* the batcher and
runs alone, as in TF Serving, so its errors are the runtime's own.

Requests joining a queue must be batchable along dimension 0, with TF Serving's messages
(INVALID_ARGUMENT, raised to the caller at once): ``Batching Run() input tensors must have at
least one dimension``, ``Batching Run() input tensors must have equal 0th-dimension size``.

On a batch thread, a batch is merged per input (``numpy.concatenate`` along dimension 0), padded
up to the next of ``allowed_batch_sizes`` with copies of the last task's first row, run once
(the runtime releases the GIL), and every output is split back by rows. Tasks whose deadline
passed in the queue fail with DEADLINE_EXCEEDED ``Run() timeout exceeded while waiting in
batching queue`` and do not run; tasks whose caller went away are dropped. The run's
``timeout_in_ms`` is the latest remaining deadline of its tasks (none if one has none).

Where tfsfast does better than TF Serving (and says so):
- tasks whose inputs differ in shape beyond dimension 0 (or in dtype) are not merged into one
  run that fails them all (TF Serving's FAILED_PRECONDITION ``Tensors with name ... have
  different shapes and padding is turned off``, which depends on which requests happen to meet
  in a batch): each group of same-shaped tasks runs as its own sub-batch, so every request gets
  what it would get alone. With ``pad_variable_length_inputs`` tasks of the same rank are padded
  (with each tensor's first element, as TF Serving) to the largest shape and run together; a task
  whose empty tensor would need padding fails alone (INVALID_ARGUMENT ``Got empty tensor in
  batch of non-empty tensors.``), where TF Serving fails the batch.
- an expired task fails alone (TF Serving runs a batch while any task in it is still in time).
- a signature without inputs has nothing to batch on: its runs bypass the batcher (TF Serving
  fails them with ``Batching Run() must have at least one input tensor``).

Results: each request gets a dict ``{output alias: ndarray}`` whose arrays are row slices (views)
of the batch's output arrays; a request split across batches gets its parts concatenated.
Waiters are woken once per batch: asyncio futures through one ``loop.call_soon_threadsafe`` per
(batch, event loop), ``concurrent.futures.Future`` s directly.

Where a batch runs: on a batch thread, as in TF Serving, unless the signature's batches are
measured to run in microseconds (a ``RunCost`` estimate of its batch runs, wherever they ran,
below the ``RunCostPolicy``'s ``inline_run_max_seconds``, the limit unbatched runs go inline by;
over it, a probe batch now and then, see ``RunCost.allows``). Then a request from an event loop (an
asyncio-style waiter, scheduled from its loop's thread) wakes no thread: the loop takes the
queue's ready batches itself once the requests it is reading now are queued (one ``call_soon``
per loop turn), runs them and resolves its own waiters directly. Handing a 5 µs run to a thread
and back costs more than the run, and a thread's result waits for the GIL behind the loop; on
the loop, the batch is every request that arrived in the same turn, and the only cost per
request left is its own decoding and encoding. A batch that is not ready then (an open batch
within ``batch_timeout_micros``) is taken by the loop when its timeout comes (a loop timer), or,
when that is under ``LOOP_TIMER_MIN_SECONDS`` (an event loop's timers are not finer), left to a
batch thread, woken for it. Requests from threads (gRPC, warmup) always wake a batch thread.
The limits, deadlines, padding and splitting are the queue's and the same either way.

Every task of a batch taken from a queue is answered once: whatever raises outside a run (in
the grouping, or splitting the outputs) fails the batch's tasks not answered yet with INTERNAL
``Batched run failed: ...``, and is then logged by whoever ran the batch.

Where the code is: this module keeps the session (its queues, the loop flushes and timers,
``close``); the work per task and per batch (``schedule``'s checks and task, the grouping, merge,
run, output checks and split, the delivery to waiters) is a ``SignatureBatcher`` per batched
signature, in the compiled ``_batching_session`` over the compiled queue, else in its pure-Python
twin ``_batching_session_py`` (with ``TFSFAST_NO_EXTENSIONS=1``, over the Python queue, or when
the compiled module cannot be imported). The twin also holds what both share: TF Serving's
messages and the padding of variable-length inputs.

Ownership: request arrays are read by the batch thread until the request completes; callers must
not modify them meanwhile. Thread-safety: ``schedule`` and ``close`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from tfsfast import _extensions
from tfsfast.batching import _batching_session_py, batch_queue
from tfsfast.batching._batching_session_py import (  # noqa: F401 (TF Serving's messages, here too)
    EMPTY_PADDING_MESSAGE,
    EXPIRED_IN_QUEUE_MESSAGE,
    OUTPUT_RANK_ZERO_MESSAGE,
    OUTPUT_SIZE_MESSAGE,
    RANK_ZERO_MESSAGE,
    UNEQUAL_BATCH_MESSAGE,
)
from tfsfast.batching.batching_parameters import (
    BatchingSessionOptions,
    QueueOptions,
    batching_session_options,
    queue_options,
)
from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

# The per-task work: compiled, else the twin (TFSFAST_NO_EXTENSIONS=1 forces the twin). The
# compiled module runs over the compiled queue only; a session over the Python queue takes the
# twin (see ``hot_path_for``).
implementation = _extensions.load("tfsfast.batching._batching_session",
                                  "tfsfast.batching._batching_session_py")
IMPLEMENTATION: str = _extensions.implementation(implementation)

# An open batch due sooner than this is left to a batch thread rather than to a loop timer:
# libuv's timers count whole milliseconds.
LOOP_TIMER_MIN_SECONDS = 1e-3


def hot_path_for(queue_implementation: ModuleType) -> ModuleType:
    """The per-task module for a scheduler whose queue module is ``queue_implementation``."""
    if implementation.IMPLEMENTATION == queue_implementation.IMPLEMENTATION == "compiled":
        return implementation
    return _batching_session_py


class BatchingSession:
    """Batches a session's runs; see the module docstring for the rules.

    ``session`` is the runtime session (``signatures``, ``run``); it stays owned by the bundle,
    which closes this object before closing the session. ``implementation`` is the per-task
    module (by default :func:`hot_path_for` the scheduler's queue module). ``run_cost_policy``
    decides which batches an event loop runs itself (the bundle's, from its
    ``SessionBundleConfig``).
    """

    def __init__(self, session: Any, scheduler: SharedBatchScheduler,
                 queue_options: QueueOptions,
                 options: BatchingSessionOptions | None = None,
                 implementation: ModuleType | None = None,
                 run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY) -> None:
        self.session = session
        self.options = options or BatchingSessionOptions()
        self.queue_options = queue_options
        self.implementation = implementation or hot_path_for(scheduler.implementation)
        self._batchers: dict[str, Any] = {}
        self._closed = False
        try:
            for key, signature in session.signatures.items():
                if not signature.inputs:
                    continue
                batcher = self.implementation.SignatureBatcher(
                    key, signature, session.run, self.options, scheduler.implementation,
                    self._flush_on_loop, run_cost_policy)
                batcher.queue = scheduler.add_queue(queue_options, batcher.process_batch,
                                                    self._reject_tasks)
                batcher.metrics = self.implementation.batch_metrics.BatchMetrics(
                    scheduler.options.thread_pool_name)
                self._batchers[key] = batcher
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, session: Any, scheduler: SharedBatchScheduler, params: Any,
               run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY) -> BatchingSession:
        """From a ``BatchingParameters`` message (validated here; INVALID_ARGUMENT if not)."""
        return cls(session, scheduler, queue_options(params), batching_session_options(params),
                   run_cost_policy=run_cost_policy)

    @property
    def batched_signatures(self) -> tuple[str, ...]:
        return tuple(self._batchers)

    def queue(self, signature_key: str) -> Any:
        """The queue of ``signature_key`` (None if it is not batched)."""
        batcher = self._batchers.get(signature_key)
        return None if batcher is None else batcher.queue

    def batcher(self, signature_key: str) -> Any:
        """The batcher of ``signature_key`` (None if it is not batched): its
        ``schedule(inputs, output_aliases, timeout_in_ms, deadline, waiter)`` is this
        session's ``schedule`` for that signature, for a caller that resolved the signature once
        and schedules many runs of it (the REST fast path)."""
        return self._batchers.get(signature_key)

    def schedule(self, signature_key: str, inputs: Mapping[str, Any],
                 output_aliases: Sequence[str] | None, timeout_in_ms: int,
                 deadline: float | None, waiter: Any) -> Any:
        """Enqueues a run and returns its ``BatchTask``, or None when the run bypasses the
        batcher. ``waiter`` (an asyncio or ``concurrent.futures`` Future, or an object with an
        asyncio future's ``get_loop``/``done``/``set_result``/``set_exception``) receives the
        result dict or the ``ServingError``; an asyncio-style waiter must be scheduled from its
        loop's thread. Raises ``ServingError`` for a request that cannot be batched, an expired
        deadline, a full or closed queue, or a task too large."""
        batcher = self._batchers.get(signature_key)
        if batcher is None:
            return None
        return batcher.schedule(inputs, output_aliases, timeout_in_ms, deadline, waiter)

    def _flush_on_loop(self, batcher: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Runs the queue's ready batches on ``loop`` (after the requests of this loop turn
        were queued); an open batch that is not ready yet gets a loop timer for its timeout, or
        a batch thread (see the module docstring). ``batcher.schedule`` calls it soon, once
        per loop turn."""
        batcher.flushing.discard(loop)
        queue = batcher.queue
        try:
            while True:
                batch = queue.take_batch()
                if batch is None:
                    break
                batcher.process_batch(batch, loop)
        except Exception:  # a bug: log it, keep the loop serving (as a batch thread would)
            _log.exception("Batch processing on the event loop failed")
        if not queue.num_enqueued_tasks:
            return
        wait = queue.open_batch_wait()
        if wait is None or wait < LOOP_TIMER_MIN_SECONDS:
            queue.wake_thread()
        elif loop not in batcher.timers:
            batcher.timers.add(loop)
            loop.call_later(wait, self._flush_on_timer, batcher, loop)

    def _flush_on_timer(self, batcher: Any, loop: asyncio.AbstractEventLoop) -> None:
        batcher.timers.discard(loop)
        self._flush_on_loop(batcher, loop)

    def _reject_tasks(self, tasks: list[Any]) -> None:
        done = self.implementation.Completions()
        for task in tasks:
            done.fail(task, ServingError(Code.UNAVAILABLE, batch_queue.QUEUE_CLOSED_MESSAGE))
        done.deliver()

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Closes every queue: waiting requests fail with UNAVAILABLE; batches already taken by
        a batch thread finish. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for batcher in self._batchers.values():
            if batcher.queue is not None:
                batcher.queue.close()

    def __repr__(self) -> str:
        return f"BatchingSession(signatures={list(self._batchers)}, {self.queue_options})"
