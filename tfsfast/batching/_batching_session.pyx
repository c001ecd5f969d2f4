# cython: language_level=3, boundscheck=False, wraparound=False
"""The batching session's per-task work, compiled: the twin of ``_batching_session_py``.

Same classes, rules, messages and contracts as the twin (read its docstring and
:mod:`tfsfast.batching.batching_session`); what differs is only how:

- tasks are the compiled queue's ``BatchTask`` (cimported: typed field access, and
  ``BatchQueue.schedule`` called in C), so this module only runs over ``_batch_queue``;
- an array's rank, rows and dtype kind are read through numpy's C API (``cimport numpy``);
  anything that is not exactly an ndarray goes through its Python attributes, as in the twin;
- deadlines are on the queue's clock (``time.monotonic()``), read in C;
- the batch is one group without a dict when every task's key equals the first's (the usual
  case), and a batch's waiters on one event loop (the usual case) without a dict either.

The padding of variable-length inputs (``padded_pieces``), TF Serving's messages and the log
are the twin's, imported from it. ``batch_metrics`` is the pair's ``BatchMetrics`` module: here
``_batch_metrics``, its one source compiled, whose ``record_run`` is called in C.

Two implementations rather than one source compiled twice: the compiled one reads arrays through
numpy's C API and the compiled queue's tasks as C structs, where the twin works over either
queue through Python attributes.
"""

import concurrent.futures

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY, ceil
from libc.string cimport memcpy

from tfsfast._cdefs.clock cimport monotonic
from tfsfast._cdefs.numpy_array cimport new_array
from tfsfast.batching._batch_metrics cimport BatchMetrics
from tfsfast.batching._batch_queue cimport Batch, BatchQueue, BatchTask, BatchWaiter
from tfsfast.util._run_cost cimport RunCost

from tfsfast.batching import _batch_metrics as batch_metrics
from tfsfast.batching import _batching_session_py as _twin
from tfsfast.batching._batching_session_py import (
    EXPIRED_IN_QUEUE_MESSAGE,
    LOG,
    OUTPUT_RANK_ZERO_MESSAGE,
    OUTPUT_SIZE_MESSAGE,
    RANK_ZERO_MESSAGE,
    UNEQUAL_BATCH_MESSAGE,
    copy_error,
    run_failed,
)
from tfsfast.runtime import validation
from tfsfast.util.status import Code, ServingError

cnp.import_array()

IMPLEMENTATION = "compiled"

cdef enum:
    # Ranks up to this have their row views made in C (numpy's own limit is 64).
    _VIEW_MAX_DIMS = 32

cdef object _ndarray = np.ndarray
cdef object _concatenate = np.concatenate
cdef object _Future = concurrent.futures.Future
cdef object _as_feed_array = validation.as_feed_array
cdef object _padded_pieces = _twin.padded_pieces
cdef object _set_outcomes = _twin.set_outcomes
cdef object _INVALID_ARGUMENT = Code.INVALID_ARGUMENT
cdef object _DEADLINE_EXCEEDED = Code.DEADLINE_EXCEEDED
cdef object _FAILED_PRECONDITION = Code.FAILED_PRECONDITION
# dtype.kind of the string dtypes, which merge whatever their width.
cdef str _KIND_O = "O", _KIND_S = "S", _KIND_U = "U"


cdef inline int _rank(object array) except -1:
    if type(array) is _ndarray:
        return cnp.PyArray_NDIM(<cnp.ndarray>array)
    return array.ndim


cdef inline Py_ssize_t _rows(object array) except? -1:
    """Dimension 0 of ``array`` (rank 1 or more)."""
    if type(array) is _ndarray:
        return cnp.PyArray_DIM(<cnp.ndarray>array, 0)
    return array.shape[0]


cdef inline char _kind(cnp.ndarray array) noexcept:
    """``array.dtype.kind``."""
    return (<cnp.dtype><object>cnp.PyArray_DESCR(array)).kind


cdef object _concat_rows(list arrays):
    """``np.concatenate(arrays)`` (along dimension 0, two or more arrays): for C-contiguous
    ndarrays sharing one dtype object and one row shape, a new C-contiguous array filled by
    memcpy (numpy's general copy loop costs ~700 instructions per small array, a batch of 32
    requests ~60,000); anything else (object or structured dtypes, other layouts, a mix of
    dtypes, empty rows) by numpy."""
    cdef Py_ssize_t n = len(arrays), i, rows = 0, row_bytes, offset = 0, size
    cdef cnp.ndarray first, a, out
    cdef cnp.npy_intp* shape
    cdef cnp.npy_intp dims[_VIEW_MAX_DIMS]
    cdef char* data
    cdef int d, nd
    cdef char kind
    item = arrays[0]
    if type(item) is not _ndarray:
        return _concatenate(arrays)
    first = <cnp.ndarray>item
    nd = cnp.PyArray_NDIM(first)
    kind = _kind(first)
    if not 0 < nd <= _VIEW_MAX_DIMS or kind == b'O' or kind == b'V':
        return _concatenate(arrays)
    shape = cnp.PyArray_DIMS(first)
    for d in range(1, nd):
        if shape[d] == 0:
            return _concatenate(arrays)
        dims[d] = shape[d]
    for i in range(n):
        item = arrays[i]
        if type(item) is not _ndarray:
            return _concatenate(arrays)
        a = <cnp.ndarray>item
        if (cnp.PyArray_DESCR(a) != cnp.PyArray_DESCR(first) or cnp.PyArray_NDIM(a) != nd
                or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
            return _concatenate(arrays)
        shape = cnp.PyArray_DIMS(a)
        for d in range(1, nd):
            if shape[d] != dims[d]:
                return _concatenate(arrays)
        rows += shape[0]
    dims[0] = rows
    out = new_array(<cnp.dtype><object>cnp.PyArray_DESCR(first), nd, dims, NULL, None)
    # A new C-order array's row stride is the itemsize times the (nonzero) row dimensions.
    row_bytes = cnp.PyArray_STRIDE(out, 0)
    data = cnp.PyArray_BYTES(out)
    for i in range(n):
        a = <cnp.ndarray>arrays[i]
        size = cnp.PyArray_DIM(a, 0) * row_bytes
        if size:
            memcpy(data + offset, cnp.PyArray_DATA(a), size)
            offset += size
    return out


cdef object _row_view(object array, Py_ssize_t start, Py_ssize_t stop):
    """``array[start:stop]``, for ``0 <= start <= stop``: for a writeable C-contiguous ndarray
    made in C, exactly the view numpy's slicing makes (same dtype, shape, strides, flags and
    base), else by numpy's slicing."""
    cdef cnp.ndarray a, view
    cdef cnp.npy_intp* shape
    cdef cnp.npy_intp* strides
    cdef cnp.npy_intp dims[_VIEW_MAX_DIMS]
    cdef int d, nd
    if type(array) is _ndarray:
        a = <cnp.ndarray>array
        nd = cnp.PyArray_NDIM(a)
        shape = cnp.PyArray_DIMS(a)
        # The arrays whose row views are made in C: writeable C-contiguous ones (numpy's
        # NPY_ARRAY_CARRAY, the flags new_array gives a view).
        if (cnp.PyArray_CHKFLAGS(a, cnp.NPY_ARRAY_CARRAY) and 0 < nd <= _VIEW_MAX_DIMS
                and stop <= shape[0]):
            dims[0] = stop - start
            for d in range(1, nd):
                dims[d] = shape[d]
            strides = cnp.PyArray_STRIDES(a)
            # numpy points an empty slice at the array's start.
            view = new_array(<cnp.dtype><object>cnp.PyArray_DESCR(a), nd, dims,
                             cnp.PyArray_BYTES(a) + (start * strides[0] if stop > start else 0),
                             array)
            for d in range(nd):
                if cnp.PyArray_STRIDE(view, d) != strides[d]:
                    break  # strides numpy's slicing keeps and a new array would not
            else:
                return view
    return array[start:stop]


cdef class Request:
    """A task's payload; see the twin's ``Request``."""

    cdef readonly list arrays
    cdef readonly tuple output_aliases
    cdef readonly tuple group

    def __init__(self, list arrays, tuple output_aliases, tuple group):
        self.arrays = arrays
        self.output_aliases = output_aliases
        self.group = group


cdef tuple _group_key(list arrays, bint pad):
    cdef list key = []
    cdef cnp.ndarray a
    cdef cnp.npy_intp* shape
    cdef char kind
    cdef int d, nd
    for array in arrays:
        if type(array) is not _ndarray:
            key.append(_twin.group_key([array], pad)[0])
            continue
        a = <cnp.ndarray>array
        nd = cnp.PyArray_NDIM(a)
        kind = _kind(a)
        if kind == b'O':
            kind_key = _KIND_O
        elif kind == b'S':
            kind_key = _KIND_S
        elif kind == b'U':
            kind_key = _KIND_U
        else:
            kind_key = <object>cnp.PyArray_DESCR(a)
        if pad:
            key.append((nd, kind_key))
        else:
            shape = cnp.PyArray_DIMS(a)
            key.append((tuple([shape[d] for d in range(1, nd)]), kind_key))
    return tuple(key)


cdef bint _is_key_of(tuple key, list arrays, bint pad) except -1:
    """Whether ``key`` is ``_group_key(arrays, pad)``, read without building the key (False
    also when that is not known cheaply: then the key is built)."""
    cdef cnp.ndarray a
    cdef cnp.npy_intp* shape
    cdef tuple pair, inner
    cdef char kind
    cdef int d, nd
    cdef Py_ssize_t i, n = len(arrays)
    if len(key) != n:
        return False
    for i in range(n):
        array = arrays[i]
        if type(array) is not _ndarray:
            return False
        a = <cnp.ndarray>array
        nd = cnp.PyArray_NDIM(a)
        pair = <tuple>key[i]
        kind = _kind(a)
        kind_key = pair[1]
        if kind == b'O' or kind == b'S' or kind == b'U':
            if type(kind_key) is not str or (<str>kind_key)[0] != <Py_UCS4>kind:
                return False
        elif kind_key is not <object>cnp.PyArray_DESCR(a):
            return False
        if pad:
            if pair[0] != nd:
                return False
            continue
        inner = <tuple>pair[0]
        if len(inner) != nd - 1:
            return False
        shape = cnp.PyArray_DIMS(a)
        for d in range(1, nd):
            if <Py_ssize_t>inner[d - 1] != shape[d]:
                return False
    return True


def group_key(list arrays, bint pad):
    """See the twin's ``group_key``."""
    return _group_key(arrays, pad)


cdef inline Request _payload(BatchTask task):
    return (task if task.parent is None else task.parent).payload


cdef object _task_rows(BatchTask task, Py_ssize_t index):
    array = _payload(task).arrays[index]
    if task.parent is None:
        return array
    return array[task.start:task.stop]


cdef int _resolve(list items) except -1:
    cdef tuple item
    cdef BatchWaiter waiter
    for item in items:
        future = item[0]
        if isinstance(future, BatchWaiter):  # the same methods, called in C
            waiter = <BatchWaiter>future
            if waiter.done():
                continue
            if item[2] is None:
                waiter.set_result(item[1])
            else:
                waiter.set_exception(item[2])
            continue
        if future.done():  # cancelled: the caller went away
            continue
        error = item[2]
        if error is None:
            future.set_result(item[1])
        else:
            future.set_exception(error)
    return 0


def resolve_futures(list items):
    """Runs on the waiters' event loop, once per batch."""
    _resolve(items)


cdef class Completions:
    """The outcomes of one batch, delivered together at the end; see the twin's.

    The waiters of the first event loop met are kept apart from the others' (``_by_loop``,
    made only when a second loop shows up); they are delivered first, as the twin's dict
    order would."""

    cdef object _current_loop
    cdef object _first_loop
    cdef list _first_items
    cdef dict _by_loop
    cdef list _threads
    cdef list _answered

    def __init__(self, current_loop=None):
        self._current_loop = current_loop
        self._first_loop = None
        self._first_items = None
        self._by_loop = None
        self._threads = []
        self._answered = []

    cpdef succeed(self, BatchTask task, object result):
        self._finish(task, result, None)

    cpdef fail(self, BatchTask task, object error):
        self._finish(task, None, error)

    def fail_unanswered(self, tasks, error):
        """Fails (each with a copy of ``error``) those of ``tasks`` not answered yet."""
        answered = {id(task) for task in self._answered}
        for task in tasks:
            if id(task) not in answered:
                self._finish(task, None, copy_error(error))

    cdef int _finish(self, BatchTask task, object result, object error) except -1:
        cdef BatchTask parent = task.parent
        cdef list parts
        self._answered.append(task)
        if parent is not None:
            if not parent.finish_part(task.index, result, error):
                return 0  # other parts still to come
            task = parent
            if parent.error is not None:
                result, error = None, copy_error(parent.error)
            else:
                parts = parent.part_results
                result = {alias: _concatenate([part[alias] for part in parts])
                          for alias in parts[0]}
        waiter = task.waiter
        if waiter is None or task.cancelled:
            return 0
        item = (waiter, result, error)
        if isinstance(waiter, _Future):
            self._threads.append(item)
            return 0
        loop = waiter.get_loop()
        if self._first_items is None:
            self._first_loop = loop
            self._first_items = [item]
        elif loop is self._first_loop:
            self._first_items.append(item)
        else:
            if self._by_loop is None:
                self._by_loop = {}
            self._by_loop.setdefault(loop, []).append(item)
        return 0

    cpdef deliver(self):
        cdef tuple item
        if self._first_items is not None:
            self._deliver_to(self._first_loop, self._first_items)
        if self._by_loop is not None:
            for loop, items in self._by_loop.items():
                self._deliver_to(loop, items)
        if self._threads:
            _set_outcomes(self._threads)
        self._first_loop = None
        self._first_items = None
        self._by_loop = None
        self._threads = []

    cdef int _deliver_to(self, object loop, list items) except -1:
        if loop is self._current_loop:
            return _resolve(items)
        try:
            loop.call_soon_threadsafe(resolve_futures, items)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more
        return 0


cdef bint _same_group(list tasks) except -1:
    cdef BatchTask task
    cdef tuple first = _payload(<BatchTask>tasks[0]).group, key
    for task in tasks:
        key = _payload(task).group
        if key is not first and key != first:
            return False
    return True


cdef class SignatureBatcher:
    """One batched signature and the per-task work for it; see the twin's. ``queue_implementation``
    must be the compiled queue module."""

    cdef readonly object key
    cdef readonly object signature
    cdef readonly tuple input_aliases
    cdef readonly tuple feed_dtypes
    cdef readonly tuple output_aliases
    cdef readonly frozenset output_set
    cdef public BatchQueue queue
    cdef public BatchMetrics metrics  # None: nothing recorded
    cdef readonly RunCost cost
    cdef readonly set flushing
    cdef readonly set timers
    cdef object _run
    cdef tuple _allowed
    cdef bint _pad
    cdef object _flush_on_loop
    cdef Py_ssize_t _n_inputs
    cdef tuple _last_group

    def __init__(self, key, signature, run, options, queue_implementation, flush_on_loop,
                 run_cost_policy):
        if queue_implementation.BatchTask is not BatchTask:
            raise TypeError("the compiled batching session needs the compiled batching queue "
                            f"(tfsfast.batching._batch_queue); got {queue_implementation!r}")
        self.key = key
        self.signature = signature
        self.input_aliases = tuple(signature.inputs)
        self.feed_dtypes = tuple(info.dtype for info in signature.inputs.values())
        self.output_aliases = tuple(signature.outputs)
        self.output_set = frozenset(self.output_aliases)
        self.queue = None
        self.cost = RunCost(run_cost_policy)
        self.flushing = set()
        self.timers = set()
        self._run = run
        self._allowed = tuple(options.allowed_batch_sizes)
        self._pad = bool(options.pad_variable_length_inputs)
        self._flush_on_loop = flush_on_loop
        self._n_inputs = len(self.input_aliases)
        self._last_group = None

    def schedule(self, inputs, output_aliases, double timeout_in_ms, deadline, waiter):
        """``BatchingSession.schedule`` for this signature: the task, or None to bypass."""
        cdef object wanted = None
        cdef Py_ssize_t index, n = self._n_inputs
        cdef list arrays = []
        cdef bint is_dict = type(inputs) is dict
        cdef Py_ssize_t size = 0
        cdef double now, task_deadline, timed
        cdef Request request
        cdef BatchTask task
        if output_aliases:
            wanted = _twin.wanted_outputs(self, output_aliases)
            if wanted is False:
                return None
        if len(inputs) != n:
            return None
        for index in range(n):
            alias = self.input_aliases[index]
            value = (<dict>inputs).get(alias) if is_dict else inputs.get(alias)
            if value is None:
                return None  # an unknown or missing alias: the runtime reports it
            if type(value) is not _ndarray:
                value = _as_feed_array(value, self.feed_dtypes[index], index)
            if _rank(value) == 0:
                raise ServingError(_INVALID_ARGUMENT, RANK_ZERO_MESSAGE)
            if index == 0:
                size = _rows(value)
            elif _rows(value) != size:
                raise ServingError(_INVALID_ARGUMENT, UNEQUAL_BATCH_MESSAGE)
            arrays.append(value)
        now = monotonic()
        task_deadline = INFINITY if deadline is None else deadline
        if timeout_in_ms > 0:
            timed = now + timeout_in_ms / 1000.0
            if timed < task_deadline:
                task_deadline = timed
        if task_deadline <= now:
            raise ServingError(_DEADLINE_EXCEEDED, EXPIRED_IN_QUEUE_MESSAGE)
        request = Request.__new__(Request)
        request.arrays = arrays
        request.output_aliases = wanted
        # The key of the last request, when it fits (the usual case): no new key, and the
        # batch's tasks share one object, which groups them at once.
        group = self._last_group
        if group is None or not _is_key_of(group, arrays, self._pad):
            group = self._last_group = _group_key(arrays, self._pad)
        request.group = group
        task = BatchTask(size, request, waiter, task_deadline)
        loop = None
        if (not isinstance(waiter, _Future)
                and self.cost.allows(now)):
            # microsecond batches: this loop runs them
            loop = ((<BatchWaiter>waiter).get_loop() if isinstance(waiter, BatchWaiter)
                    else waiter.get_loop())
        self.queue.schedule(task, loop is None)
        if loop is not None and loop not in self.flushing:
            self.flushing.add(loop)
            loop.call_soon(self._flush_on_loop, self, loop)
        return task

    def process_batch(self, Batch batch, loop=None):
        """Runs ``batch`` and delivers its outcomes; see the twin's."""
        cdef Completions done = Completions(loop)
        cdef list tasks
        cdef BatchTask task
        cdef double dequeued = monotonic()
        try:
            for task in batch.expired:
                done._finish(task, None,
                             ServingError(_DEADLINE_EXCEEDED, EXPIRED_IN_QUEUE_MESSAGE))
            tasks = batch.tasks
            if len(tasks) == 1 or (tasks and _same_group(tasks)):
                self._run_group(tasks, done, dequeued)
            elif tasks:
                for group in _twin.groups(tasks):
                    self._run_group(group, done, dequeued)
        except Exception as e:
            done.fail_unanswered([*batch.expired, *batch.tasks], run_failed(e))
            raise
        finally:
            done.deliver()

    cdef Py_ssize_t _round_up(self, Py_ssize_t rows) except -1:
        cdef Py_ssize_t size
        for size in self._allowed:
            if size >= rows:
                return size
        return rows

    cdef int _run_group(self, list tasks, Completions done, double dequeued) except -1:
        cdef Py_ssize_t i, j, rows = 0, padded, offset, end, n_tasks, n_out
        cdef BatchTask task
        cdef list pieces = None, arrays, out_aliases, out_arrays
        cdef dict inputs, result
        cdef tuple wanted
        try:
            if self._pad and len(tasks) > 1:
                tasks, pieces = _padded_pieces(self._n_inputs, tasks, done)
                if not tasks:
                    return 0
            n_tasks = len(tasks)
            for task in tasks:
                rows += task.size
            padded = self._round_up(rows) if rows else 0
            inputs = {}
            for i in range(self._n_inputs):
                alias = self.input_aliases[i]
                if pieces is not None:
                    arrays = pieces[i]
                elif n_tasks == 1 and padded == rows:
                    inputs[alias] = _task_rows(<BatchTask>tasks[0], i)
                    continue
                else:
                    arrays = [_task_rows(task, i) for task in tasks]
                if padded > rows:
                    source = next(a for a in reversed(arrays) if a.shape[0])
                    arrays = [*arrays, np.repeat(source[:1], padded - rows, axis=0)]
                inputs[alias] = arrays[0] if len(arrays) == 1 else _concat_rows(arrays)
            if self.metrics is not None:
                self.metrics.record_run(tasks, rows, padded, dequeued)
            outputs = self.cost.timed(self._run, self.key, inputs, None, self._timeout_ms(tasks))
            for array in outputs.values():
                if _rank(array) == 0:
                    raise ServingError(_FAILED_PRECONDITION, OUTPUT_RANK_ZERO_MESSAGE)
                if _rows(array) != padded:
                    raise ServingError(_FAILED_PRECONDITION, OUTPUT_SIZE_MESSAGE)
        except ServingError as e:
            done.fail_unanswered(tasks, e)
            return 0
        except Exception as e:  # a bug, not the request's fault: fail the group, keep serving
            LOG.exception("Batched run of signature %s failed", self.key)
            done.fail_unanswered(tasks, run_failed(e))
            return 0
        # Each task's rows of every output it wants (views).
        out_aliases = list(outputs.keys())
        out_arrays = list(outputs.values())
        n_out = len(out_aliases)
        offset = 0
        for task in tasks:
            end = offset + task.size
            wanted = _payload(task).output_aliases
            result = {}
            if wanted is None:
                for j in range(n_out):
                    result[out_aliases[j]] = _row_view(out_arrays[j], offset, end)
            else:
                for alias in wanted:
                    result[alias] = _row_view(outputs[alias], offset, end)
            done._finish(task, result, None)
            offset = end
        return 0

    cdef object _timeout_ms(self, list tasks):
        cdef BatchTask task
        cdef double latest = 0.0, ms
        for task in tasks:
            if task.deadline == INFINITY:
                return 0
            if task.deadline > latest:
                latest = task.deadline
        ms = ceil((latest - monotonic()) * 1000.0)
        return 1 if ms < 1.0 else int(ms)

    def __repr__(self):
        return f"SignatureBatcher({self.key!r})"
