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
below ``saved_model_bundle.INLINE_RUN_MAX_SECONDS``, the limit unbatched runs go inline by; over
it, a probe batch now and then, see ``RunCost.allows``). Then a request from an event loop (an
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

Ownership: request arrays are read by the batch thread until the request completes; callers must
not modify them meanwhile. Thread-safety: ``schedule`` and ``close`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfsfast.batching import batch_queue
from tfsfast.batching.batching_parameters import (
    BatchingSessionOptions,
    QueueOptions,
    batching_session_options,
    queue_options,
)
from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler
from tfsfast.runtime import validation
from tfsfast.servables import saved_model_bundle
from tfsfast.util.run_cost import RunCost
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

RANK_ZERO_MESSAGE = "Batching Run() input tensors must have at least one dimension"
UNEQUAL_BATCH_MESSAGE = "Batching Run() input tensors must have equal 0th-dimension size"
EXPIRED_IN_QUEUE_MESSAGE = "Run() timeout exceeded while waiting in batching queue"
OUTPUT_RANK_ZERO_MESSAGE = "Batched output tensor has 0 dimensions"
OUTPUT_SIZE_MESSAGE = ("Batched output tensor's 0th dimension does not equal the sum of the 0th "
                       "dimension sizes of the input tensors")
EMPTY_PADDING_MESSAGE = "Got empty tensor in batch of non-empty tensors."

# An open batch due sooner than this is left to a batch thread rather than to a loop timer:
# libuv's timers count whole milliseconds.
LOOP_TIMER_MIN_SECONDS = 1e-3


class _Request:
    """A task's payload: its input arrays (in signature order), the outputs it wants, and the
    key of the tasks it may share a run with (``_group_key``, computed once, at enqueue)."""

    __slots__ = ("arrays", "group", "output_aliases")

    def __init__(self, arrays: list[np.ndarray], output_aliases: tuple[str, ...] | None,
                 group: tuple[Any, ...]) -> None:
        self.arrays = arrays
        self.output_aliases = output_aliases
        self.group = group


class _SignatureBatcher:
    """One batched signature: its aliases, feed dtypes and queue."""

    __slots__ = ("cost", "feed_dtypes", "flushing", "input_aliases", "key", "output_aliases",
                 "output_set", "queue", "signature", "timers")

    def __init__(self, key: str, signature: Any) -> None:
        self.key = key
        self.signature = signature
        self.input_aliases: tuple[str, ...] = tuple(signature.inputs)
        self.feed_dtypes = tuple(info.dtype for info in signature.inputs.values())
        self.output_aliases: tuple[str, ...] = tuple(signature.outputs)
        self.output_set = frozenset(self.output_aliases)
        self.queue: Any = None
        # Seconds per batch run (see the module docstring); the event loops with a flush of
        # this queue to come, and those with a timer for its open batch.
        self.cost = RunCost()
        self.flushing: set[asyncio.AbstractEventLoop] = set()
        self.timers: set[asyncio.AbstractEventLoop] = set()


def _copy_error(error: ServingError) -> ServingError:
    # Each waiter gets its own exception object: one instance raised in several coroutines
    # would collect every coroutine's traceback.
    return ServingError(error.code, error.message)


def _resolve_futures(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the waiters' event loop, once per batch."""
    for future, result, error in items:
        if future.done():  # cancelled: the caller went away
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class _Completions:
    """The outcomes of one batch, delivered together at the end (one wake-up per loop).

    ``current_loop`` is the event loop whose thread delivers (a batch run on the loop): its
    waiters are resolved directly, without a wake-up."""

    __slots__ = ("_by_loop", "_current_loop", "_threads")

    def __init__(self, current_loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._threads: list[tuple[concurrent.futures.Future[Any], Any, Any]] = []
        self._current_loop = current_loop

    def succeed(self, task: Any, result: dict[str, np.ndarray]) -> None:
        self._finish(task, result, None)

    def fail(self, task: Any, error: ServingError) -> None:
        self._finish(task, None, error)

    def _finish(self, task: Any, result: Any, error: ServingError | None) -> None:
        parent = task.parent
        if parent is not None:
            if not parent.finish_part(task.index, result, error):
                return  # other parts still to come
            task = parent
            if parent.error is not None:
                result, error = None, _copy_error(parent.error)
            else:
                parts = parent.part_results
                result = {alias: np.concatenate([part[alias] for part in parts])
                          for alias in parts[0]}
        waiter = task.waiter
        if waiter is None or task.cancelled:
            return
        if isinstance(waiter, concurrent.futures.Future):
            self._threads.append((waiter, result, error))
        else:
            self._by_loop.setdefault(waiter.get_loop(), []).append((waiter, result, error))

    def deliver(self) -> None:
        for loop, items in self._by_loop.items():
            if loop is self._current_loop:
                _resolve_futures(items)
                continue
            try:
                loop.call_soon_threadsafe(_resolve_futures, items)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more
        for future, result, error in self._threads:
            try:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
            except concurrent.futures.InvalidStateError:
                pass  # cancelled by its owner
        self._by_loop = {}
        self._threads = []


def _group_key(arrays: list[np.ndarray], pad: bool) -> tuple[Any, ...]:
    key = []
    for array in arrays:
        dtype = array.dtype
        # Strings of any length merge (numpy widens); other dtypes must match exactly, so a
        # request of the wrong dtype runs alone and gets the runtime's own dtype error.
        kind: Any = dtype.kind if dtype.kind in "OSU" else dtype
        key.append((array.ndim if pad else array.shape[1:], kind))
    return tuple(key)


def _task_rows(task: Any, index: int) -> np.ndarray:
    array = task.root.payload.arrays[index]
    if task.parent is None:
        return array
    return array[task.start:task.stop]


def _pad_to(array: np.ndarray, inner: tuple[int, ...]) -> np.ndarray:
    """``array`` padded after each non-batch dimension to ``inner``, with its first element."""
    if array.shape[1:] == inner:
        return array
    if array.shape[0] == 0:
        return np.empty((0, *inner), dtype=array.dtype)
    padded = np.full((array.shape[0], *inner), array.flat[0], dtype=array.dtype)
    padded[tuple(slice(0, n) for n in array.shape)] = array
    return padded


class BatchingSession:
    """Batches a session's runs; see the module docstring for the rules.

    ``session`` is the runtime session (``signatures``, ``run``); it stays owned by the bundle,
    which closes this object before closing the session.
    """

    def __init__(self, session: Any, scheduler: SharedBatchScheduler,
                 queue_options: QueueOptions,
                 options: BatchingSessionOptions | None = None) -> None:
        self.session = session
        self.options = options or BatchingSessionOptions()
        self.queue_options = queue_options
        self._allowed = tuple(self.options.allowed_batch_sizes)
        self._pad = self.options.pad_variable_length_inputs
        self._task_type = scheduler.task_type
        self._monotonic = scheduler.implementation.monotonic
        self._batchers: dict[str, _SignatureBatcher] = {}
        self._closed = False
        try:
            for key, signature in session.signatures.items():
                if not signature.inputs:
                    continue
                batcher = _SignatureBatcher(key, signature)
                batcher.queue = scheduler.add_queue(
                    queue_options, functools.partial(self._process_batch, batcher),
                    self._reject_tasks)
                self._batchers[key] = batcher
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, session: Any, scheduler: SharedBatchScheduler, params: Any) -> BatchingSession:
        """From a ``BatchingParameters`` message (validated here; INVALID_ARGUMENT if not)."""
        return cls(session, scheduler, queue_options(params), batching_session_options(params))

    @property
    def batched_signatures(self) -> tuple[str, ...]:
        return tuple(self._batchers)

    def queue(self, signature_key: str) -> Any:
        """The queue of ``signature_key`` (None if it is not batched)."""
        batcher = self._batchers.get(signature_key)
        return None if batcher is None else batcher.queue

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
        wanted: tuple[str, ...] | None = None
        if output_aliases:
            wanted = tuple(output_aliases)
            if len(wanted) != len(batcher.output_aliases) or set(wanted) != batcher.output_set:
                return None  # a subset (or duplicates): TF Serving runs it unbatched
            if wanted == batcher.output_aliases:
                wanted = None
        aliases = batcher.input_aliases
        if len(inputs) != len(aliases):
            return None
        arrays: list[np.ndarray] = []
        size = -1
        for index, alias in enumerate(aliases):
            value = inputs.get(alias)
            if value is None:
                return None  # an unknown or missing alias: the runtime reports it
            if type(value) is not np.ndarray:
                value = validation.as_feed_array(value, batcher.feed_dtypes[index], index)
            if value.ndim == 0:
                raise ServingError(Code.INVALID_ARGUMENT, RANK_ZERO_MESSAGE)
            if size < 0:
                size = value.shape[0]
            elif value.shape[0] != size:
                raise ServingError(Code.INVALID_ARGUMENT, UNEQUAL_BATCH_MESSAGE)
            arrays.append(value)
        now = self._monotonic()
        task_deadline = math.inf if deadline is None else deadline
        if timeout_in_ms > 0:
            task_deadline = min(task_deadline, now + timeout_in_ms / 1000.0)
        if task_deadline <= now:
            raise ServingError(Code.DEADLINE_EXCEEDED, EXPIRED_IN_QUEUE_MESSAGE)
        task = self._task_type(size, _Request(arrays, wanted, _group_key(arrays, self._pad)),
                               waiter, task_deadline)
        loop = None
        if (not isinstance(waiter, concurrent.futures.Future)
                and batcher.cost.allows(saved_model_bundle.INLINE_RUN_MAX_SECONDS, now)):
            loop = waiter.get_loop()  # microsecond batches: this loop runs them (see above)
        batcher.queue.schedule(task, loop is None)
        if loop is not None and loop not in batcher.flushing:
            batcher.flushing.add(loop)
            loop.call_soon(self._flush_on_loop, batcher, loop)
        return task

    def _flush_on_loop(self, batcher: _SignatureBatcher,
                       loop: asyncio.AbstractEventLoop) -> None:
        """Runs the queue's ready batches on ``loop`` (after the requests of this loop turn
        were queued); an open batch that is not ready yet gets a loop timer for its timeout, or
        a batch thread (see the module docstring)."""
        batcher.flushing.discard(loop)
        queue = batcher.queue
        try:
            while True:
                batch = queue.take_batch()
                if batch is None:
                    break
                self._process_batch(batcher, batch, loop)
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

    def _flush_on_timer(self, batcher: _SignatureBatcher,
                        loop: asyncio.AbstractEventLoop) -> None:
        batcher.timers.discard(loop)
        self._flush_on_loop(batcher, loop)

    # --- batch threads ----------------------------------------------------------------------

    def _process_batch(self, batcher: _SignatureBatcher, batch: Any,
                       loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Runs ``batch`` and delivers its outcomes; ``loop`` is the event loop whose thread
        this is (None on a batch thread)."""
        done = _Completions(loop)
        try:
            for task in batch.expired:
                done.fail(task, ServingError(Code.DEADLINE_EXCEEDED, EXPIRED_IN_QUEUE_MESSAGE))
            tasks = batch.tasks
            if len(tasks) == 1:
                self._run_group(batcher, tasks, done)
            elif tasks:
                groups: dict[tuple[Any, ...], list[Any]] = {}
                for task in tasks:
                    groups.setdefault(task.root.payload.group, []).append(task)
                for group in groups.values():
                    self._run_group(batcher, group, done)
        finally:
            done.deliver()

    def _round_up(self, rows: int) -> int:
        for size in self._allowed:
            if size >= rows:
                return size
        return rows

    def _run_group(self, batcher: _SignatureBatcher, tasks: list[Any], done: _Completions) -> None:
        try:
            if self._pad and len(tasks) > 1:
                tasks, pieces = self._padded_pieces(batcher, tasks, done)
                if not tasks:
                    return
            else:
                pieces = [[_task_rows(task, i) for task in tasks]
                          for i in range(len(batcher.input_aliases))]
            rows = 0
            for task in tasks:
                rows += task.size
            padded = self._round_up(rows) if rows else 0
            inputs: dict[str, np.ndarray] = {}
            for alias, arrays in zip(batcher.input_aliases, pieces, strict=True):
                if padded > rows:
                    source = next(a for a in reversed(arrays) if a.shape[0])
                    arrays = [*arrays, np.repeat(source[:1], padded - rows, axis=0)]
                inputs[alias] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            outputs = batcher.cost.timed(self.session.run, batcher.key, inputs, None,
                                         self._timeout_ms(tasks))
            for array in outputs.values():
                if array.ndim == 0:
                    raise ServingError(Code.FAILED_PRECONDITION, OUTPUT_RANK_ZERO_MESSAGE)
                if array.shape[0] != padded:
                    raise ServingError(Code.FAILED_PRECONDITION, OUTPUT_SIZE_MESSAGE)
        except ServingError as e:
            for task in tasks:
                done.fail(task, _copy_error(e))
            return
        except Exception as e:  # a bug, not the request's fault: fail the group, keep serving
            _log.exception("Batched run of signature %s failed", batcher.key)
            error = ServingError(Code.INTERNAL, f"Batched run failed: {e}")
            for task in tasks:
                done.fail(task, _copy_error(error))
            return
        # Each task's rows of every output it wants (views).
        offset = 0
        everything = list(outputs.items())
        for task in tasks:
            end = offset + task.size
            wanted = task.root.payload.output_aliases
            if wanted is None:
                result = {alias: array[offset:end] for alias, array in everything}
            else:
                result = {alias: outputs[alias][offset:end] for alias in wanted}
            done.succeed(task, result)
            offset = end

    def _padded_pieces(self, batcher: _SignatureBatcher, tasks: list[Any],
                       done: _Completions) -> tuple[list[Any], list[list[np.ndarray]]]:
        """Same-rank tasks padded to the largest shape per input; tasks whose empty tensor would
        need padding fail alone."""
        n_inputs = len(batcher.input_aliases)
        rows = [[_task_rows(task, i) for i in range(n_inputs)] for task in tasks]
        while True:
            inner = [tuple(max(sizes) for sizes in zip(*(r[i].shape[1:] for r in rows),
                                                       strict=True))
                     for i in range(n_inputs)]
            bad = [k for k, r in enumerate(rows)
                   if any(a.size == 0 and a.shape[0] and a.shape[1:] != inner[i]
                          for i, a in enumerate(r))]
            if not bad:
                break
            for k in reversed(bad):
                done.fail(tasks[k], ServingError(Code.INVALID_ARGUMENT, EMPTY_PADDING_MESSAGE))
                del tasks[k], rows[k]
            if not tasks:
                return [], []
        return tasks, [[_pad_to(r[i], inner[i]) for r in rows] for i in range(n_inputs)]

    def _timeout_ms(self, tasks: list[Any]) -> int:
        latest = 0.0
        for task in tasks:
            if task.deadline == math.inf:
                return 0
            latest = max(latest, task.deadline)
        return max(1, math.ceil((latest - self._monotonic()) * 1000.0))

    def _reject_tasks(self, tasks: list[Any]) -> None:
        done = _Completions()
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
