"""The batching session's per-task work, pure Python: the twin of ``_batching_session.pyx``.

:class:`SignatureBatcher` is one batched signature of a ``BatchingSession`` (see
:mod:`tfsfast.batching.batching_session` for the rules): ``schedule`` checks and enqueues a run
(the feed arrays, the deadline, the task), ``process_batch`` runs a batch the queue hands over
(grouping, merging, the run, splitting the outputs) and :class:`Completions` delivers its
outcomes, one wake-up per batch and event loop. The compiled module has the same classes and
contracts; it imports from here what both share: TF Serving's messages and the padding of
variable-length inputs (``padded_pieces``, rare enough to stay Python).

This twin works over either queue (it only reads the task's attributes); the compiled module
needs the compiled queue's ``BatchTask``. ``batching_session`` picks the pair.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np

# The pair's BatchMetrics module, which batching_session makes each queue's metrics with.
from tfsfast.batching import _batch_metrics_py as batch_metrics  # noqa: F401
from tfsfast.batching._batch_metrics_py import BatchMetrics
from tfsfast.runtime import validation
from tfsfast.util.run_cost import RunCost, RunCostPolicy
from tfsfast.util.status import Code, ServingError

IMPLEMENTATION = "python"

# The batching session's log, whichever module writes to it.
LOG = logging.getLogger("tfsfast.batching.batching_session")

RANK_ZERO_MESSAGE = "Batching Run() input tensors must have at least one dimension"
UNEQUAL_BATCH_MESSAGE = "Batching Run() input tensors must have equal 0th-dimension size"
EXPIRED_IN_QUEUE_MESSAGE = "Run() timeout exceeded while waiting in batching queue"
OUTPUT_RANK_ZERO_MESSAGE = "Batched output tensor has 0 dimensions"
OUTPUT_SIZE_MESSAGE = ("Batched output tensor's 0th dimension does not equal the sum of the 0th "
                       "dimension sizes of the input tensors")
EMPTY_PADDING_MESSAGE = "Got empty tensor in batch of non-empty tensors."


def run_failed(error: BaseException) -> ServingError:
    """INTERNAL for a bug while running a batch (not the request's fault)."""
    return ServingError(Code.INTERNAL, f"Batched run failed: {error}")


def copy_error(error: ServingError) -> ServingError:
    # Each waiter gets its own exception object: one instance raised in several coroutines
    # would collect every coroutine's traceback.
    return ServingError(error.code, error.message)


class Request:
    """A task's payload: its input arrays (in signature order), the outputs it wants (None: all,
    in the signature's order), and the key of the tasks it may share a run with
    (:func:`group_key`, computed once, at enqueue)."""

    __slots__ = ("arrays", "group", "output_aliases")

    def __init__(self, arrays: list[np.ndarray], output_aliases: tuple[str, ...] | None,
                 group: tuple[Any, ...]) -> None:
        self.arrays = arrays
        self.output_aliases = output_aliases
        self.group = group


def group_key(arrays: list[np.ndarray], pad: bool) -> tuple[Any, ...]:
    """Per input: the shape beyond dimension 0 (its rank with ``pad``), and the dtype."""
    key = []
    for array in arrays:
        dtype = array.dtype
        # Strings of any length merge (numpy widens); other dtypes must match exactly, so a
        # request of the wrong dtype runs alone and gets the runtime's own dtype error.
        kind: Any = dtype.kind if dtype.kind in "OSU" else dtype
        key.append((array.ndim if pad else array.shape[1:], kind))
    return tuple(key)


def set_outcomes(items: list[tuple[concurrent.futures.Future[Any], Any, Any]]) -> None:
    """Sets each ``concurrent.futures.Future``'s result or exception (from any thread)."""
    for future, result, error in items:
        try:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by its owner


def resolve_futures(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Runs on the waiters' event loop, once per batch."""
    for future, result, error in items:
        if future.done():  # cancelled: the caller went away
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Completions:
    """The outcomes of one batch, delivered together at the end (one wake-up per loop).

    ``current_loop`` is the event loop whose thread delivers (a batch run on the loop): its
    waiters are resolved directly, without a wake-up. Every task given to ``succeed`` or
    ``fail`` is answered once: ``fail_unanswered`` fails the others of a batch."""

    __slots__ = ("_answered", "_by_loop", "_current_loop", "_threads")

    def __init__(self, current_loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._threads: list[tuple[concurrent.futures.Future[Any], Any, Any]] = []
        self._current_loop = current_loop
        self._answered: list[Any] = []

    def succeed(self, task: Any, result: dict[str, np.ndarray]) -> None:
        self._finish(task, result, None)

    def fail(self, task: Any, error: ServingError) -> None:
        self._finish(task, None, error)

    def fail_unanswered(self, tasks: list[Any], error: ServingError) -> None:
        """Fails (each with a copy of ``error``) those of ``tasks`` not answered yet."""
        answered = {id(task) for task in self._answered}
        for task in tasks:
            if id(task) not in answered:
                self.fail(task, copy_error(error))

    def _finish(self, task: Any, result: Any, error: ServingError | None) -> None:
        self._answered.append(task)
        parent = task.parent
        if parent is not None:
            if not parent.finish_part(task.index, result, error):
                return  # other parts still to come
            task = parent
            if parent.error is not None:
                result, error = None, copy_error(parent.error)
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
                resolve_futures(items)
                continue
            try:
                loop.call_soon_threadsafe(resolve_futures, items)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more
        set_outcomes(self._threads)
        self._by_loop = {}
        self._threads = []


def task_rows(task: Any, index: int) -> np.ndarray:
    """Input ``index`` of ``task``: its request's array, or a part's rows of it."""
    array = task.root.payload.arrays[index]
    if task.parent is None:
        return array
    return array[task.start:task.stop]


def pad_to(array: np.ndarray, inner: tuple[int, ...]) -> np.ndarray:
    """``array`` padded after each non-batch dimension to ``inner``, with its first element."""
    if array.shape[1:] == inner:
        return array
    if array.shape[0] == 0:
        return np.empty((0, *inner), dtype=array.dtype)
    padded = np.full((array.shape[0], *inner), array.flat[0], dtype=array.dtype)
    padded[tuple(slice(0, n) for n in array.shape)] = array
    return padded


def padded_pieces(n_inputs: int, tasks: list[Any],
                  done: Any) -> tuple[list[Any], list[list[np.ndarray]]]:
    """Same-rank tasks padded to the largest shape per input; tasks whose empty tensor would
    need padding fail alone (through ``done``). Returns the tasks left and, per input, their
    arrays; ``tasks`` itself is not changed."""
    tasks = list(tasks)
    rows = [[task_rows(task, i) for i in range(n_inputs)] for task in tasks]
    while True:
        inner = [tuple(max(sizes) for sizes in zip(*(r[i].shape[1:] for r in rows), strict=True))
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
    return tasks, [[pad_to(r[i], inner[i]) for r in rows] for i in range(n_inputs)]


def wanted_outputs(batcher: Any,
                   output_aliases: Sequence[str]) -> tuple[str, ...] | Literal[False] | None:
    """A request's output filter (not empty) for ``Request.output_aliases``: None for every
    output in the signature's order, else the order asked; False when the run must bypass the
    batcher (a subset, or duplicates: TF Serving runs it unbatched)."""
    wanted = tuple(output_aliases)
    if len(wanted) != len(batcher.output_aliases) or set(wanted) != batcher.output_set:
        return False
    return None if wanted == batcher.output_aliases else wanted


def groups(tasks: list[Any]) -> Iterable[list[Any]]:
    """``tasks`` by group key, in the order of each key's first task."""
    by_key: dict[tuple[Any, ...], list[Any]] = {}
    for task in tasks:
        by_key.setdefault(task.root.payload.group, []).append(task)
    return by_key.values()


def same_group(tasks: list[Any]) -> bool:
    """Whether every task of ``tasks`` (two or more) has the first one's group key."""
    first = tasks[0].root.payload.group
    for task in tasks:
        key = task.root.payload.group
        if key is not first and key != first:
            return False
    return True


class SignatureBatcher:
    """One batched signature: its aliases, feed dtypes, queue and run cost, and the per-task
    work of the batching session for it.

    ``run`` is the session's ``run(signature_key, inputs, output_aliases, timeout_in_ms)``;
    ``options`` a ``BatchingSessionOptions``; ``queue_implementation`` the queue module whose
    ``BatchTask`` and clock the tasks use; ``flush_on_loop(batcher, loop)`` is called soon on
    ``loop`` (once per loop turn) when a request from that loop is queued to run there;
    ``run_cost_policy`` decides, by the batches' measured cost, whether they run there.
    ``queue`` and ``metrics`` (a :class:`BatchMetrics`, None: nothing recorded) are set by the
    session once the scheduler made the queue.
    """

    __slots__ = ("_allowed", "_flush_on_loop", "_monotonic", "_pad", "_run", "_task_type", "cost",
                 "feed_dtypes", "flushing", "input_aliases", "key", "metrics", "output_aliases",
                 "output_set", "queue", "signature", "timers")

    def __init__(self, key: str, signature: Any, run: Callable[..., Any], options: Any,
                 queue_implementation: ModuleType,
                 flush_on_loop: Callable[[Any, asyncio.AbstractEventLoop], Any],
                 run_cost_policy: RunCostPolicy) -> None:
        self.key = key
        self.signature = signature
        self.input_aliases: tuple[str, ...] = tuple(signature.inputs)
        self.feed_dtypes = tuple(info.dtype for info in signature.inputs.values())
        self.output_aliases: tuple[str, ...] = tuple(signature.outputs)
        self.output_set = frozenset(self.output_aliases)
        self.queue: Any = None
        self.metrics: BatchMetrics | None = None
        # Seconds per batch run; the event loops with a flush of this queue to come, and those
        # with a timer for its open batch (see batching_session).
        self.cost = RunCost(run_cost_policy)
        self.flushing: set[asyncio.AbstractEventLoop] = set()
        self.timers: set[asyncio.AbstractEventLoop] = set()
        self._run = run
        self._allowed = tuple(options.allowed_batch_sizes)
        self._pad = bool(options.pad_variable_length_inputs)
        self._task_type = queue_implementation.BatchTask
        self._monotonic = queue_implementation.monotonic
        self._flush_on_loop = flush_on_loop

    def schedule(self, inputs: Mapping[str, Any], output_aliases: Sequence[str] | None,
                 timeout_in_ms: float, deadline: float | None, waiter: Any) -> Any:
        """``BatchingSession.schedule`` for this signature: the task, or None to bypass."""
        wanted = wanted_outputs(self, output_aliases) if output_aliases else None
        if wanted is False:
            return None
        aliases = self.input_aliases
        if len(inputs) != len(aliases):
            return None
        arrays: list[np.ndarray] = []
        size = -1
        for index, alias in enumerate(aliases):
            value = inputs.get(alias)
            if value is None:
                return None  # an unknown or missing alias: the runtime reports it
            if type(value) is not np.ndarray:
                value = validation.as_feed_array(value, self.feed_dtypes[index], index)
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
        task = self._task_type(size, Request(arrays, wanted, group_key(arrays, self._pad)),
                               waiter, task_deadline)
        loop = None
        if not isinstance(waiter, concurrent.futures.Future) and self.cost.allows(now):
            loop = waiter.get_loop()  # microsecond batches: this loop runs them
        self.queue.schedule(task, loop is None)
        if loop is not None and loop not in self.flushing:
            self.flushing.add(loop)
            loop.call_soon(self._flush_on_loop, self, loop)
        return task

    def process_batch(self, batch: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Runs ``batch`` and delivers its outcomes; ``loop`` is the event loop whose thread
        this is (None on a batch thread). Every task of the batch is answered, whatever
        raises: an exception escaping the grouping or the splitting fails the tasks not
        answered yet (INTERNAL), and is raised again for the caller to log."""
        done = Completions(loop)
        dequeued = self._monotonic()
        try:
            for task in batch.expired:
                done.fail(task, ServingError(Code.DEADLINE_EXCEEDED, EXPIRED_IN_QUEUE_MESSAGE))
            tasks = batch.tasks
            if len(tasks) == 1 or (tasks and same_group(tasks)):
                self._run_group(tasks, done, dequeued)
            elif tasks:
                for group in groups(tasks):
                    self._run_group(group, done, dequeued)
        except Exception as e:
            done.fail_unanswered([*batch.expired, *batch.tasks], run_failed(e))
            raise
        finally:
            done.deliver()

    def _round_up(self, rows: int) -> int:
        """``rows`` up to the next of ``allowed_batch_sizes`` (itself when none is larger)."""
        for size in self._allowed:
            if size >= rows:
                return size
        return rows

    def _run_group(self, tasks: list[Any], done: Completions, dequeued: float) -> None:
        """Runs ``tasks`` (of one group) as one batch and gives ``done`` their outcomes."""
        try:
            if self._pad and len(tasks) > 1:
                tasks, pieces = padded_pieces(len(self.input_aliases), tasks, done)
                if not tasks:
                    return
            else:
                pieces = [[task_rows(task, i) for task in tasks]
                          for i in range(len(self.input_aliases))]
            rows = 0
            for task in tasks:
                rows += task.size
            padded = self._round_up(rows) if rows else 0
            inputs: dict[str, np.ndarray] = {}
            for alias, arrays in zip(self.input_aliases, pieces, strict=True):
                if padded > rows:
                    source = next(a for a in reversed(arrays) if a.shape[0])
                    arrays = [*arrays, np.repeat(source[:1], padded - rows, axis=0)]
                inputs[alias] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            if self.metrics is not None:
                self.metrics.record_run(tasks, rows, padded, dequeued)
            outputs = self.cost.timed(self._run, self.key, inputs, None, self._timeout_ms(tasks))
            for array in outputs.values():
                if array.ndim == 0:
                    raise ServingError(Code.FAILED_PRECONDITION, OUTPUT_RANK_ZERO_MESSAGE)
                if array.shape[0] != padded:
                    raise ServingError(Code.FAILED_PRECONDITION, OUTPUT_SIZE_MESSAGE)
        except ServingError as e:
            done.fail_unanswered(tasks, e)
            return
        except Exception as e:  # a bug, not the request's fault: fail the group, keep serving
            LOG.exception("Batched run of signature %s failed", self.key)
            done.fail_unanswered(tasks, run_failed(e))
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

    def _timeout_ms(self, tasks: list[Any]) -> int:
        """The run's ``timeout_in_ms``: the latest remaining deadline of ``tasks`` (0: none)."""
        latest = 0.0
        for task in tasks:
            if task.deadline == math.inf:
                return 0
            latest = max(latest, task.deadline)
        return max(1, math.ceil((latest - self._monotonic()) * 1000.0))

    def __repr__(self) -> str:
        return f"SignatureBatcher({self.key!r})"
