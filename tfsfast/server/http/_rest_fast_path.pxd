# The compiled REST predict fast path: declarations for the compiled protocol, which calls
# ``answer`` directly. See _rest_fast_path.pyx; _rest_fast_path_py.py is the pure-Python twin.

from tfsfast.batching._batch_queue cimport BatchWaiter

cdef class BatchedReply


cdef class _Model:
    cdef readonly object bundle
    cdef readonly bint inline
    cdef readonly object batching
    cdef readonly object run_inline
    cdef dict _inputs
    cdef dict _outputs

    cdef tuple signature(self, str signature_name, bint enforce)


cdef class RestFastPath:
    cdef object _find
    cdef object _parse
    cdef object _format
    cdef object _format_error
    cdef object _timeout_in_ms
    cdef bint _enforce
    cdef object _cors
    cdef bytes _ok_head
    cdef dict _models
    cdef bytes _last_path
    cdef tuple _last_route

    cpdef object answer(self, str method, bytes path, dict headers, bytes body, bint keep_alive,
                        object connection=*)
    cdef object answer_plain(self, bytes path, bytes body, bint keep_alive, object connection)
    cdef object _schedule(self, object batcher, object entry, object parsed,
                          object output_dtypes, object connection, bint keep_alive)
    cdef bytes _encode_outputs(self, object outputs, bint columnar, object output_dtypes,
                               bint keep_alive)
    cdef bytes _encode_error(self, object error, bint keep_alive)
    cdef tuple _route(self, bytes path)
    cdef _Model _model(self, object bundle)


cdef class DeferredConnection:
    # A connection that takes a batched reply's outcome through a C call (the compiled protocol).
    cdef int deferred_answer(self, BatchedReply reply) except -1


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
    cdef readonly bint finished
    cdef public object task

    cdef _finish(self, object outputs, object error)
    cpdef bytes encode(self, bint keep_alive)
