# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled runtime: SavedModels run through the TensorFlow C API (``TF_SessionRun``).

The same interface as :mod:`tfsfast.runtime._session_py` (its reference twin):
``load_saved_model(export_dir, tags, session_config) -> SavedModelSession`` with
``.signatures``, ``.meta_graph_def``, ``.run(signature_key, inputs, output_aliases=None,
timeout_in_ms=0) -> {alias: ndarray}`` and ``.close()``.

What it does differently is cost: a run is one ``TF_SessionRun`` with the GIL released, plus a
few hundred nanoseconds of argument handling, instead of ~90 µs of TF's Python session wrappers.
Nothing a run needs is built per call that could be built once: feeds and fetches are resolved to
``TF_Output`` arrays at load, the last signature looked up is remembered, the feed/fetch arrays
of a run live on the C stack, a ``TF_Status`` is reused, small inputs are staged into reused
tensors (below), and ``run_options`` is NULL unless there is a timeout.

Buffers:

- Numeric inputs larger than ``STAGE_MAX_BYTES`` (4 KiB) are lent to TensorFlow, not copied:
  each TF_Tensor is built on the array's memory and holds a reference to the array, dropped when
  TensorFlow releases the tensor (normally when the run ends; later if the graph kept it).
  TensorFlow itself copies an input whose data is not aligned to ``TF_TensorDefaultAlignment()``
  (64 bytes); use :func:`tfsfast.runtime.arrays.aligned_empty` to decode large inputs straight
  into memory it can borrow. TensorFlow never writes into a lent buffer (the C API marks it as
  not owned, which rules out in-place reuse). A non-contiguous array is made contiguous (one
  copy) first.
- Smaller numeric inputs are copied into a staging tensor TensorFlow allocated, kept per
  signature input and reused by the next run that feeds an array of the same shape: a copy of a
  few KiB costs less than building and releasing a TF_Tensor around the caller's memory. A
  staging tensor is reused only when TensorFlow holds no reference to it any more (a graph that
  kept the fed value keeps that buffer; the next run stages into a new one), and only by one run
  at a time (a concurrent run lends instead). Either way the caller's array is only read, and
  no reference to it is kept past the run.
- Numeric outputs are numpy arrays over the TF_Tensor TensorFlow returned, which the array owns
  (through :class:`TensorBuffer`, its ``base``) and frees when it is collected. An output whose
  buffer TensorFlow still shares (a constant, a variable's value, a fed input passed through) is
  copied instead, so an output never aliases model state or an input.
- Strings are copied both ways: numpy holds ``bytes`` objects, TensorFlow holds ``TF_TString``.
  Inputs may be object arrays of bytes (or str, encoded as UTF-8) or ``S``/``U`` arrays; outputs
  are object arrays of bytes.
- numpy is reached through its documented C API (``cimport numpy``; arrays are made by
  ``tfsfast._cdefs.numpy_array.new_array``), not through Python calls.

Thread-safety: ``run`` may be called from any number of threads at once (a TF session is
thread-safe; everything a run mutates is local to the call). ``close`` may be called at any time:
runs already in flight finish, later ones fail with CANCELLED, and the session is freed when the
last in-flight run returns.
"""

import os

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF, PyObject
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from tfsfast._cdefs.clock cimport monotonic
from tfsfast._cdefs.numpy_array cimport new_array
from tfsfast._cdefs.tf_c_api cimport (
    TF_AllocateTensor, TF_Buffer, TF_CloseSession, TF_DataType, TF_DataTypeSize,
    TF_DeleteBuffer, TF_DeleteGraph, TF_DeleteSession, TF_DeleteSessionOptions, TF_DeleteStatus,
    TF_DeleteTensor, TF_Dim, TF_GetCode, TF_Graph, TF_GraphOperationByName,
    TF_LoadSessionFromSavedModel, TF_Message, TF_NewBuffer, TF_NewGraph, TF_NewSessionOptions,
    TF_NewStatus, TF_NewTensor, TF_NumDims, TF_OK, TF_Operation, TF_OperationNumOutputs,
    TF_OperationOutputType, TF_Output, TF_Session, TF_SessionOptions, TF_SessionRun,
    TF_SetConfig, TF_Status, TF_STRING, TF_StringCopy, TF_StringDealloc, TF_StringGetDataPointer,
    TF_StringGetSize, TF_StringInit, TF_Tensor, TF_TensorByteSize, TF_TensorData,
    TF_TensorDefaultAlignment, TF_TensorElementCount, TF_TensorMaybeMove, TF_TensorType,
    TF_TString,
)

from tfsfast.runtime import validation
from tfsfast.runtime.dtypes import DataType, short_name, to_numpy
from tfsfast.runtime.session_options import session_config_for_export
from tfsfast.runtime.signature import parse_tensor_name, signatures_from_meta_graph
from tfsfast.util.status import Code, ServingError

cnp.import_array()

IMPLEMENTATION = "compiled"

# TF_Tensor data alignment TensorFlow borrows without copying (EIGEN_MAX_ALIGN_BYTES).
TENSOR_ALIGNMENT = TF_TensorDefaultAlignment()

# TF's shape rank limit (TensorShape::MaxDimensions); bounds the dims scratch arrays.
cdef enum:
    _MAX_DIMS = 254
    # Feeds plus fetches of a run up to this many live on the C stack (more: one heap block).
    _STACK_TENSORS = 16
    # Numeric inputs of at most this many bytes are staged (copied into a reused TF tensor)
    # rather than lent: past a few KiB the copy costs more than the TF_Tensor it saves.
    _STAGE_MAX_BYTES = 4096

STAGE_MAX_BYTES = _STAGE_MAX_BYTES

cdef object _ndarray = np.ndarray
cdef cnp.dtype _object_dtype = np.dtype(object)


def _numpy_by_tf():
    table = []
    for value in range(max(DataType) + 1):
        try:
            table.append(to_numpy(value) if value != DataType.DT_STRING else None)
        except (KeyError, ValueError):
            table.append(None)
    return tuple(table)


# numpy dtype of each TF DataType, indexed by its number (None: strings and unsupported types).
cdef tuple _NUMPY_BY_TF = _numpy_by_tf()


cdef object _status_error(TF_Status* status):
    message = TF_Message(status).decode("utf-8", "replace")
    return ServingError(Code(<int>TF_GetCode(status)), message)


# ------------------------------------------------------------------------------------------------
# Tensors


@cython.freelist(16)  # one per output array: skips the allocator on the run's hot path
cdef class TensorBuffer:
    """Owns one TF_Tensor, freed when this object is.

    An output array built on TensorFlow's buffer holds one as its ``base``, so the buffer lives
    exactly as long as some array uses it. Created only by the runtime.
    """

    def __cinit__(self):
        self.tensor = NULL

    @staticmethod
    cdef TensorBuffer adopt(TF_Tensor* tensor):
        cdef TensorBuffer self = TensorBuffer.__new__(TensorBuffer)
        self.tensor = tensor
        return self

    def __dealloc__(self):
        if self.tensor != NULL:
            TF_DeleteTensor(self.tensor)
            self.tensor = NULL


cdef void _release_array(void* data, size_t length, void* array) noexcept with gil:
    # TensorFlow's deallocator for a lent input: drops the reference the tensor held on the
    # array. Normally called by our own TF_DeleteTensor after the run (or inside TF_NewTensor,
    # when TensorFlow chose to copy); if the graph kept the tensor, by whichever thread drops it
    # last, hence "with gil".
    Py_DECREF(<object>array)


cdef TF_Tensor* _lend(object array, int dtype) except NULL:
    """A TF_Tensor over the memory of ``array``, a C-contiguous ndarray of TF type ``dtype``."""
    cdef int64_t dims[_MAX_DIMS]
    cdef int i, nd = cnp.PyArray_NDIM(<cnp.ndarray>array)
    cdef cnp.npy_intp* shape = cnp.PyArray_DIMS(<cnp.ndarray>array)
    cdef size_t nbytes = TF_DataTypeSize(<TF_DataType>dtype)
    cdef TF_Tensor* tensor
    if nd > _MAX_DIMS:
        raise ServingError(Code.INVALID_ARGUMENT, f"Too many dimensions: {nd}")
    for i in range(nd):
        dims[i] = shape[i]
        nbytes *= <size_t>shape[i]
    Py_INCREF(array)  # the tensor's reference, dropped by _release_array
    tensor = TF_NewTensor(<TF_DataType>dtype, dims, nd, cnp.PyArray_DATA(<cnp.ndarray>array),
                          nbytes, _release_array, <void*>array)
    if tensor == NULL:  # TF_NewTensor has called the deallocator already
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Cannot make a {short_name(dtype)} tensor of shape "
                           f"{list(array.shape)} from {array.dtype} data")
    return tensor


cdef void _delete_strings(TF_Tensor* tensor) noexcept:
    # A TF_STRING tensor from TF_AllocateTensor does not free its elements; we do.
    cdef TF_TString* data = <TF_TString*>TF_TensorData(tensor)
    cdef int64_t i
    for i in range(TF_TensorElementCount(tensor)):
        TF_StringDealloc(&data[i])
    TF_DeleteTensor(tensor)


cdef TF_Tensor* _copy_strings(object array) except NULL:
    """A TF_STRING tensor holding a copy of each element of ``array`` (bytes, or str as UTF-8)."""
    cdef int64_t dims[_MAX_DIMS]
    cdef int i, ndim = array.ndim
    cdef Py_ssize_t j, n
    cdef TF_Tensor* tensor
    cdef TF_TString* data
    cdef bytes b
    if ndim > _MAX_DIMS:
        raise ServingError(Code.INVALID_ARGUMENT, f"Too many dimensions: {ndim}")
    shape = array.shape
    for i in range(ndim):
        dims[i] = shape[i]
    items = array.ravel().tolist() if ndim else [array.item()]
    n = len(items)
    tensor = TF_AllocateTensor(TF_STRING, dims, ndim, <size_t>n * sizeof(TF_TString))
    if tensor == NULL:
        raise MemoryError()
    data = <TF_TString*>TF_TensorData(tensor)
    for j in range(n):
        TF_StringInit(&data[j])
    try:
        for j in range(n):
            item = items[j]
            if type(item) is bytes:
                b = <bytes>item
            elif isinstance(item, str):
                b = (<str>item).encode("utf-8")
            elif isinstance(item, (bytes, bytearray, memoryview)):
                b = bytes(item)
            else:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"A string tensor element is a {type(item).__name__}, "
                                   f"not bytes")
            TF_StringCopy(&data[j], PyBytes_AS_STRING(b), <size_t>PyBytes_GET_SIZE(b))
    except BaseException:
        _delete_strings(tensor)
        raise
    return tensor


cdef object _strings_to_ndarray(TF_Tensor* tensor, int ndim, cnp.npy_intp* dims):
    cdef TF_TString* data = <TF_TString*>TF_TensorData(tensor)
    cdef int64_t i, n = TF_TensorElementCount(tensor)
    # A new object array holds NULLs (numpy zero-fills it) until its items are set.
    cdef cnp.ndarray out = new_array(_object_dtype, ndim, dims, NULL, None)
    cdef PyObject** items = <PyObject**>cnp.PyArray_DATA(out)
    for i in range(n):
        value = PyBytes_FromStringAndSize(TF_StringGetDataPointer(&data[i]),
                                          <Py_ssize_t>TF_StringGetSize(&data[i]))
        Py_INCREF(value)  # the array's reference
        Py_XDECREF(items[i])
        items[i] = <PyObject*>value
    return out


cdef object _to_ndarray(TF_Tensor* tensor):
    """The numpy array for an output tensor; takes ownership of ``tensor`` on every path."""
    cdef int dtype = TF_TensorType(tensor)
    cdef int i, ndim = TF_NumDims(tensor)
    cdef cnp.npy_intp dims[_MAX_DIMS]
    cdef TF_Tensor* moved
    cdef TensorBuffer owner
    cdef cnp.ndarray out
    for i in range(ndim):
        dims[i] = <cnp.npy_intp>TF_Dim(tensor, i)
    if dtype == TF_STRING:
        try:
            return _strings_to_ndarray(tensor, ndim, dims)
        finally:
            TF_DeleteTensor(tensor)
    numpy_dtype = _NUMPY_BY_TF[dtype] if 0 <= dtype < len(_NUMPY_BY_TF) else None
    if numpy_dtype is None:
        TF_DeleteTensor(tensor)
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Cannot return a tensor of type {short_name(dtype)}")
    moved = TF_TensorMaybeMove(tensor)
    if moved != NULL:
        tensor = moved
        if TF_TensorByteSize(tensor) > 0:  # ours alone: the array takes the buffer over
            owner = TensorBuffer.adopt(tensor)
            return new_array(<cnp.dtype>numpy_dtype, ndim, dims, TF_TensorData(tensor), owner)
    # Shared with graph state (or empty): copy, then let the TF_Tensor go.
    try:
        out = new_array(<cnp.dtype>numpy_dtype, ndim, dims, NULL, None)
        memcpy(cnp.PyArray_DATA(out), TF_TensorData(tensor), TF_TensorByteSize(tensor))
        return out
    finally:
        TF_DeleteTensor(tensor)


# ------------------------------------------------------------------------------------------------
# Signatures


cdef class _SignatureRunner:
    """A signature resolved to graph tensors once, at load, and the per-run checks it needs.

    ``feeds``/``fetches`` follow ``signature.inputs``/``signature.outputs`` (sorted by alias).
    A SignatureDef tensor the graph does not have (e.g. the NoOp "output" of a TF2 export's
    ``__saved_model_init_op``) is recorded in ``unresolved`` and fails only the runs that use it.
    ``staged`` holds each input's staging tensor (see the module docstring); everything else is
    immutable after load, so runs on many threads share a runner.
    """

    def __cinit__(self):
        self.feeds = NULL
        self.fetches = NULL
        self.feed_types = NULL
        self.feed_item_sizes = NULL
        self.feed_strings = NULL
        self.staged = NULL

    def __dealloc__(self):
        cdef int i
        if self.staged != NULL:
            for i in range(self.n_inputs):
                if self.staged[i].tensor != NULL:
                    TF_DeleteTensor(self.staged[i].tensor)
        free(self.staged)
        free(self.feeds)
        free(self.fetches)
        free(self.feed_types)
        free(self.feed_item_sizes)
        free(self.feed_strings)

    cdef int lend_inputs(self, object inputs, TF_Tensor** values) except -1:
        """Builds the input tensors into ``values`` if the request takes the fast path.

        The fast path: a dict holding exactly the signature's aliases, each an ndarray of the
        graph tensor's dtype. Returns 1 when taken; else 0, with ``values`` left empty, and the
        caller goes through the shared checks (which build the error or convert the values).
        """
        cdef int i
        if self.unresolved:
            for alias in self.input_aliases:
                if alias in self.unresolved:
                    raise self.unresolved[alias]
        if type(inputs) is not dict or len(<dict>inputs) != self.n_inputs:
            return 0
        for i in range(self.n_inputs):
            value = (<dict>inputs).get(self.input_aliases[i])
            if type(value) is not _ndarray:
                break
            expected = self.feed_numpy_dtypes[i]
            if expected is None:  # a string (or a type numpy cannot hold)
                if not self.feed_strings[i] or value.dtype.kind not in "OSU":
                    break
            elif (<PyObject*>cnp.PyArray_DESCR(<cnp.ndarray>value) != <PyObject*>expected
                    and value.dtype != expected):
                break
            values[i] = self.feed(i, value)
        else:
            return 1
        self.free_inputs(values)
        return 0

    cdef TF_Tensor* feed(self, int i, object array) except NULL:
        """The tensor to feed input ``i`` from ``array``, an ndarray of the input's dtype."""
        if self.feed_strings[i]:
            return _copy_strings(array)
        if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>array):
            array = np.ascontiguousarray(array)
        return self._stage_or_lend(i, array)

    cdef TF_Tensor* _stage_or_lend(self, int i, object array) except NULL:
        """``array`` (C-contiguous) copied into input ``i``'s staging tensor if it is small and
        the staging tensor is free, else lent (see the module docstring)."""
        cdef cnp.npy_intp* shape = cnp.PyArray_DIMS(<cnp.ndarray>array)
        cdef _Staged* staged = &self.staged[i]
        cdef int d, nd = cnp.PyArray_NDIM(<cnp.ndarray>array)
        cdef size_t nbytes = self.feed_item_sizes[i]
        cdef bint same_shape
        cdef int64_t dims[_STAGE_MAX_DIMS]
        cdef TF_Tensor* tensor
        if staged.in_use or nd > _STAGE_MAX_DIMS:
            return _lend(array, self.feed_types[i])
        for d in range(nd):
            nbytes *= <size_t>shape[d]
        if nbytes == 0 or nbytes > _STAGE_MAX_BYTES:
            return _lend(array, self.feed_types[i])
        same_shape = staged.tensor != NULL and staged.ndim == nd
        if same_shape:
            for d in range(nd):
                if staged.dims[d] != shape[d]:
                    same_shape = False
                    break
        if not same_shape:
            for d in range(nd):
                dims[d] = shape[d]
            tensor = TF_AllocateTensor(<TF_DataType>self.feed_types[i], dims, nd, nbytes)
            if tensor == NULL:
                raise MemoryError()
            # The slot changes only once the new tensor exists: its shape and buffer always
            # match.
            if staged.tensor != NULL:
                TF_DeleteTensor(staged.tensor)
            staged.tensor = tensor
            staged.data = TF_TensorData(tensor)
            staged.ndim = nd
            memcpy(staged.dims, dims, nd * sizeof(int64_t))
        memcpy(staged.data, cnp.PyArray_DATA(<cnp.ndarray>array), nbytes)
        staged.in_use = True
        return staged.tensor

    cdef void free_inputs(self, TF_Tensor** values) noexcept:
        cdef int i
        cdef TF_Tensor* tensor
        cdef _Staged* staged
        for i in range(self.n_inputs):
            tensor = values[i]
            if tensor == NULL:
                continue
            values[i] = NULL
            staged = &self.staged[i]
            if tensor == staged.tensor and staged.in_use:
                staged.in_use = False
                if TF_TensorMaybeMove(tensor) == NULL:
                    # TensorFlow kept a reference (the graph stored the fed value): the buffer
                    # is its now; the next run stages into a new one.
                    staged.tensor = NULL
                    TF_DeleteTensor(tensor)
            elif self.feed_strings[i]:
                _delete_strings(tensor)
            else:
                TF_DeleteTensor(tensor)

    cdef int select_fetches(self, object output_aliases, int n, TF_Output* fetches,
                            int* positions) except -1:
        """Fills ``fetches`` with the ``n`` outputs ``output_aliases`` names, in its order.

        Unknown or repeated aliases fail as :func:`validation.fetch_aliases` words it.
        """
        cdef int i, j, position
        for i in range(n):
            found = self.output_position.get(output_aliases[i])
            if found is None:
                validation.fetch_aliases(self.signature, output_aliases)  # raises
            position = <int>found
            for j in range(i):
                if positions[j] == position:
                    validation.fetch_aliases(self.signature, output_aliases)  # raises
            positions[i] = position
            fetches[i] = self.fetches[position]
        return 0

    cdef int check_fetched(self, object aliases) except -1:
        """Fails the run if an output it fetches is not in the graph."""
        if self.unresolved:
            for alias in aliases:
                if alias in self.unresolved:
                    raise self.unresolved[alias]
        return 0


cdef TF_Output _resolve(TF_Graph* graph, str name, int* dtype) except *:
    cdef TF_Output out
    op_name, index = parse_tensor_name(name)
    out.oper = TF_GraphOperationByName(graph, op_name.encode("utf-8")) if op_name else NULL
    out.index = index
    if out.oper == NULL or index >= TF_OperationNumOutputs(out.oper):
        out.oper = NULL
        return out
    dtype[0] = <int>TF_OperationOutputType(out)
    if dtype[0] > 100:  # a ref tensor (TF1 variables) feeds and fetches as its value type
        dtype[0] -= 100
    return out


cdef _SignatureRunner _make_runner(TF_Graph* graph, object signature):
    cdef _SignatureRunner runner = _SignatureRunner.__new__(_SignatureRunner)
    cdef int i, dtype
    runner.signature = signature
    runner.input_aliases = tuple(signature.inputs)
    runner.output_aliases = tuple(signature.outputs)
    runner.n_inputs = len(runner.input_aliases)
    runner.n_outputs = len(runner.output_aliases)
    runner.feeds = <TF_Output*>calloc(max(runner.n_inputs, 1), sizeof(TF_Output))
    runner.fetches = <TF_Output*>calloc(max(runner.n_outputs, 1), sizeof(TF_Output))
    if runner.feeds == NULL or runner.fetches == NULL:
        raise MemoryError()
    unresolved = {}
    feed_dtypes = []
    for i, info in enumerate(signature.inputs.values()):
        dtype = <int>info.dtype
        runner.feeds[i] = _resolve(graph, info.tensor_name, &dtype)
        if runner.feeds[i].oper == NULL:
            unresolved[info.alias] = validation.tensor_not_in_graph(
                signature.key, "input", info.alias, info.tensor_name)
        feed_dtypes.append(dtype)
    for i, info in enumerate(signature.outputs.values()):
        dtype = <int>info.dtype
        runner.fetches[i] = _resolve(graph, info.tensor_name, &dtype)
        if runner.fetches[i].oper == NULL:
            unresolved[info.alias] = validation.tensor_not_in_graph(
                signature.key, "output", info.alias, info.tensor_name)
    runner.feed_dtypes = tuple(feed_dtypes)
    runner.feed_numpy_dtypes = tuple(
        _NUMPY_BY_TF[d] if 0 <= d < len(_NUMPY_BY_TF) else None for d in feed_dtypes)
    runner.feed_types = <int*>calloc(max(runner.n_inputs, 1), sizeof(int))
    runner.feed_item_sizes = <size_t*>calloc(max(runner.n_inputs, 1), sizeof(size_t))
    runner.feed_strings = <bint*>calloc(max(runner.n_inputs, 1), sizeof(bint))
    runner.staged = <_Staged*>calloc(max(runner.n_inputs, 1), sizeof(_Staged))
    if (runner.feed_types == NULL or runner.feed_item_sizes == NULL
            or runner.feed_strings == NULL or runner.staged == NULL):
        raise MemoryError()
    for i in range(runner.n_inputs):
        runner.feed_types[i] = feed_dtypes[i]
        runner.feed_item_sizes[i] = TF_DataTypeSize(<TF_DataType>runner.feed_types[i])
        runner.feed_strings[i] = feed_dtypes[i] == DataType.DT_STRING
    runner.output_position = {alias: i for i, alias in enumerate(runner.output_aliases)}
    runner.unresolved = unresolved or None
    return runner


# ------------------------------------------------------------------------------------------------
# Session


cdef class SavedModelSession:
    """A SavedModel loaded into a TF C API session, and its signatures resolved to tensors.

    Thread-safety: see the module docstring (``run`` from many threads at once; ``close`` any
    time). Owns the TF_Session and TF_Graph; frees them on ``close`` (or collection).
    """

    def __cinit__(self, export_dir, tags, session_config=None):
        self._session = NULL
        self._graph = NULL
        self._active = 0
        self._closed = False
        self._runners = {}
        self._derived_runners = {}
        self._last_key = None
        self._last_runner = None
        self._spare_status = NULL

    def __init__(self, export_dir, tags, session_config=None):
        cdef bytes config = session_config_for_export(session_config, export_dir)
        cdef bytes path = os.fsencode(export_dir)
        cdef list tag_bytes = [t.encode("utf-8") for t in tags]
        cdef int i, ntags = len(tag_bytes)
        cdef const char** ctags = <const char**>malloc(max(ntags, 1) * sizeof(char*))
        cdef TF_Status* status = TF_NewStatus()
        cdef TF_SessionOptions* options = TF_NewSessionOptions()
        cdef TF_Buffer* meta_graph = TF_NewBuffer()
        cdef TF_Graph* graph = TF_NewGraph()
        cdef TF_Session* session = NULL
        cdef const char* cpath = path
        cdef bytes tag
        try:
            if ctags == NULL:
                raise MemoryError()
            for i in range(ntags):
                tag = tag_bytes[i]
                ctags[i] = tag  # tag_bytes keeps each one alive
            TF_SetConfig(options, <const char*>config, len(config), status)
            if TF_GetCode(status) != TF_OK:
                raise _status_error(status)
            # Loading reads and restores the whole model: seconds, during which others serve.
            with nogil:
                session = TF_LoadSessionFromSavedModel(options, NULL, cpath, ctags, ntags, graph,
                                                       meta_graph, status)
            if TF_GetCode(status) != TF_OK:
                raise _status_error(status)
            self._session = session
            self._graph = graph
            graph = NULL
            from tensorflow.core.protobuf import meta_graph_pb2

            self.meta_graph_def = meta_graph_pb2.MetaGraphDef.FromString(
                PyBytes_FromStringAndSize(<const char*>meta_graph.data,
                                          <Py_ssize_t>meta_graph.length))
            self.export_dir = export_dir
            self.signatures = signatures_from_meta_graph(self.meta_graph_def)
            for key, signature in self.signatures.items():
                self._runners[key] = _make_runner(self._graph, signature)
        finally:
            free(ctags)
            TF_DeleteStatus(status)
            TF_DeleteSessionOptions(options)
            TF_DeleteBuffer(meta_graph)
            if graph != NULL:
                TF_DeleteGraph(graph)

    def run(self, str signature_key, object inputs, object output_aliases=None,
            object timeout_in_ms=0):
        """Runs one signature; returns the requested outputs (all of them by default) by alias.

        ``inputs`` maps every input alias to an array (aliases with a SignatureDef default may
        be left out). Errors are ``ServingError``: the request checks of
        :mod:`tfsfast.runtime.validation`, TensorFlow's own status (code and message kept), and
        DEADLINE_EXCEEDED when ``timeout_in_ms`` > 0 and the run took longer.
        """
        cdef _SignatureRunner runner
        if signature_key is self._last_key:  # a server asks for the same signature again and again
            runner = self._last_runner
        else:
            runner = self._runners.get(signature_key)
            if runner is None:
                raise validation.signature_not_found(signature_key)
            # Both fields change together: no Python code (so no other thread) runs in between.
            self._last_key = signature_key
            self._last_runner = runner
        return self._run_active(runner, inputs, output_aliases, timeout_in_ms)

    def run_signature(self, object signature, object inputs, object output_aliases=None,
                      object timeout_in_ms=0):
        """Runs a signature that is not one of the export's own but names tensors of its graph
        (MultiInference runs the union of several signatures' outputs this way, once).

        Resolved once per ``signature.key`` and cached; otherwise as :meth:`run`.
        """
        cdef _SignatureRunner runner
        if self._closed:
            raise validation.session_closed()
        runner = self._derived_runners.get(signature.key)
        if runner is None:
            runner = _make_runner(self._graph, signature)
            self._derived_runners[signature.key] = runner
        return self._run_active(runner, inputs, output_aliases, timeout_in_ms)

    cdef object _run_active(self, _SignatureRunner runner, object inputs, object output_aliases,
                            object timeout_in_ms):
        cdef long long timeout
        timeout = timeout_in_ms if type(timeout_in_ms) is int else \
            validation.timeout_ms(timeout_in_ms)
        if self._closed:
            raise validation.session_closed()
        # Counted from here, with no Python call in between, so close() cannot free the
        # session under a run that passed the check above.
        self._active += 1
        try:
            return self._run(runner, inputs, output_aliases, timeout)
        finally:
            self._active -= 1
            if self._closed and self._active == 0:
                self._release()

    cdef object _run(self, _SignatureRunner runner, object inputs, object output_aliases,
                     long long timeout_in_ms):
        cdef int n_in = runner.n_inputs
        cdef int n_out
        cdef int i
        cdef bint select = output_aliases is not None and len(output_aliases) > 0
        # Scratch for the run: input and output tensors, and the selected fetches with their
        # positions. On the C stack unless the run has more than _STACK_TENSORS of them.
        cdef TF_Tensor* stack_values[_STACK_TENSORS]
        cdef TF_Output stack_fetches[_STACK_TENSORS]
        cdef int stack_positions[_STACK_TENSORS]
        cdef TF_Tensor** values = &stack_values[0]
        cdef TF_Tensor** out_values
        cdef TF_Output* fetches = runner.fetches
        cdef int* positions = &stack_positions[0]
        cdef void* heap = NULL
        cdef TF_Status* status = NULL
        cdef TF_Buffer run_options
        cdef const TF_Buffer* run_options_ptr = NULL
        cdef unsigned char options_bytes[11]
        cdef unsigned long long ms
        cdef size_t n_options = 0
        cdef double started = 0.0, finished = 0.0
        cdef TF_Session* session = self._session
        cdef TF_Tensor* tensor
        if select:
            if type(output_aliases) is not list and type(output_aliases) is not tuple:
                output_aliases = tuple(output_aliases)  # indexed below
            n_out = len(output_aliases)
        else:
            n_out = runner.n_outputs
        if n_in + n_out > _STACK_TENSORS:
            # One block: values, then (when selecting) fetches and positions.
            heap = calloc(1, (n_in + n_out) * sizeof(TF_Tensor*)
                          + n_out * (sizeof(TF_Output) + sizeof(int)))
            if heap == NULL:
                raise MemoryError()
            values = <TF_Tensor**>heap
            positions = <int*>(<char*>heap + (n_in + n_out) * sizeof(TF_Tensor*)
                               + n_out * sizeof(TF_Output))
        else:
            for i in range(n_in + n_out):
                values[i] = NULL
        out_values = values + n_in
        try:
            if select:
                if heap == NULL:
                    fetches = &stack_fetches[0]
                else:
                    fetches = <TF_Output*>(<char*>heap + (n_in + n_out) * sizeof(TF_Tensor*))
                runner.select_fetches(output_aliases, n_out, fetches, positions)
                aliases = output_aliases
            else:
                aliases = runner.output_aliases
            runner.check_fetched(aliases)
            if not runner.lend_inputs(inputs, values):
                arrays = validation.feed_arrays(runner.signature, inputs, runner.feed_dtypes)
                for i in range(n_in):
                    values[i] = runner.feed(i, arrays[i])
            if timeout_in_ms > 0:
                # RunOptions{timeout_in_ms (field 2, varint)}, encoded by hand: it is the only
                # field ever set, and this avoids a protobuf round trip per run. With no
                # timeout run_options stays NULL: TF then runs the graph synchronously in this
                # thread (a timeout makes it run asynchronously and wait on a notification).
                ms = <unsigned long long>timeout_in_ms
                options_bytes[0] = 0x10
                n_options = 1
                while ms >= 0x80:
                    options_bytes[n_options] = <unsigned char>((ms & 0x7F) | 0x80)
                    ms >>= 7
                    n_options += 1
                options_bytes[n_options] = <unsigned char>ms
                n_options += 1
                run_options.data = options_bytes
                run_options.length = n_options
                run_options.data_deallocator = NULL
                run_options_ptr = &run_options
            # A status is reused across runs (taken and given back under the GIL, so two runs
            # never share one); TF_SessionRun sets it on every call.
            status = self._spare_status
            self._spare_status = NULL
            if status == NULL:
                status = TF_NewStatus()
                if status == NULL:
                    raise MemoryError()
            with nogil:
                if run_options_ptr != NULL:
                    started = monotonic()
                TF_SessionRun(session, run_options_ptr, runner.feeds, values, n_in, fetches,
                              out_values, n_out, NULL, 0, NULL, status)
                if run_options_ptr != NULL:
                    finished = monotonic()
            if TF_GetCode(status) != TF_OK:
                raise _status_error(status)
            if run_options_ptr != NULL and (
                    finished - started) * 1000.0 > timeout_in_ms:
                # TF enforces the deadline only while it waits; a run that computed in this
                # thread past it still fails, as it would under TF Serving's thread pools.
                raise ServingError(Code.DEADLINE_EXCEEDED, validation.TIMEOUT_MESSAGE)
            # Outputs before inputs are freed: a fed tensor passed through to an output is then
            # still shared, so it is copied rather than handed over with the caller's memory
            # (or a staging tensor's).
            result = {}
            for i in range(n_out):
                tensor = out_values[i]
                out_values[i] = NULL  # _to_ndarray owns it from here, even if it raises
                result[aliases[i]] = _to_ndarray(tensor)
            return result
        finally:
            runner.free_inputs(values)
            for i in range(n_out):
                if out_values[i] != NULL:
                    TF_DeleteTensor(out_values[i])
            free(heap)
            if status != NULL:
                if self._spare_status == NULL and TF_GetCode(status) == TF_OK:
                    self._spare_status = status
                else:
                    TF_DeleteStatus(status)

    def close(self):
        """Closes the session: later runs fail; the session is freed once in-flight runs end."""
        self._closed = True
        if self._active == 0:
            self._release()

    cdef void _release(self) noexcept:
        cdef TF_Status* status
        if self._session != NULL:
            status = TF_NewStatus()
            TF_CloseSession(self._session, status)
            TF_DeleteSession(self._session, status)
            TF_DeleteStatus(status)
            self._session = NULL
        if self._graph != NULL:
            TF_DeleteGraph(self._graph)
            self._graph = NULL

    def __dealloc__(self):
        self._release()
        if self._spare_status != NULL:
            TF_DeleteStatus(self._spare_status)
            self._spare_status = NULL


def load_saved_model(export_dir, tags, session_config=None):
    """Loads the MetaGraph with ``tags`` from ``export_dir`` into a new session.

    ``session_config``: a ``ConfigProto`` or its serialization, typically
    ``session_options.server_session_config(...)``; None means the server defaults. The export's
    ``assets.extra/saved_model_config.pb`` overrides are applied on top.
    """
    return SavedModelSession(os.fspath(export_dir), tags, session_config)
