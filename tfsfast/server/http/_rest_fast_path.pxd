# The compiled REST predict fast path: declarations for the compiled protocol, which calls
# ``answer_plain`` directly. See _rest_fast_path.pyx; _rest_fast_path_py.py is the pure-Python
# twin.

from tfsfast.batching._batch_queue cimport BatchWaiter
from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts
from tfsfast.server.predict._predict_signatures cimport PredictSignature, SignatureCache

cdef class BatchedReply


cdef class RestFastPath:
    cdef object _find
    cdef object _parse
    cdef object _format
    cdef object _format_error
    cdef object _timeout_in_ms
    cdef object _cors
    cdef bytes _ok_head
    cdef SignatureCache _signatures
    cdef bytes _last_path
    cdef tuple _last_route
    cdef RequestCounts _counts
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime
    cdef public object v2

    cpdef object answer(self, str method, bytes path, dict headers, bytes body, bint keep_alive,
                        object connection=*)
    cdef object answer_plain(self, bytes path, bytes body, bint keep_alive, object connection)
    cdef object _schedule(self, PredictSignature signature, object entry, object parsed,
                          object connection, bint keep_alive, str model_name, OkCounts ok,
                          OkCounts runtime, long long start)
    cdef bytes _encode_outputs(self, object outputs, bint columnar, object output_dtypes,
                               bint keep_alive, str model_name, OkCounts ok, long long start)
    cdef bytes _encode_error(self, object error, bint keep_alive, str model_name)
    cdef tuple _route(self, bytes path)


cdef class DeferredConnection:
    # A connection that a BatchedReply answers (deferred_done, overridden by the protocol).
    cpdef deferred_done(self, object reply)


cdef class BatchedReply(BatchWaiter):
    cdef RestFastPath _fast_path
    cdef object _connection
    cdef object _loop
    cdef object _entry
    cdef object _outputs
    cdef object _error
    cdef readonly bint columnar
    cdef readonly object output_dtypes
    cdef readonly bint keep_alive
    cdef str _model_name
    cdef OkCounts _ok
    cdef OkCounts _runtime
    cdef long long _start
    cdef long long _run_start
    cdef readonly bint finished
    cdef public object task

    cpdef object get_loop(self)
    cpdef bint done(self) except -1
    cpdef set_result(self, object result)
    cpdef set_exception(self, object error)
    cdef _finish(self, object outputs, object error)
    cpdef bytes encode(self, bint keep_alive)
