# The C declarations that make _rest_infer_fast_path_py.py, the one source of the REST V2 infer
# fast path (its contract is there), the compiled module tfsfast.server.v2._rest_infer_fast_path:
# Cython compiles that file with these declarations (pure Python mode). The compiled signature
# step and request counts are cimported under the names the file gives their twins, so their
# methods and the clock are called in C; the JSON reader works on the body's bytes in C.

import cython

from tfsfast.monitoring cimport _request_counts
from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts
from tfsfast.server.predict cimport _predict_signatures
from tfsfast.server.predict._predict_signatures cimport (
    BundleSignatures,
    PredictSignature,
    SignatureCache,
)


cdef class _Input:
    cdef public str name
    cdef public str datatype
    cdef public tuple shape
    cdef public list data
    cdef public bint ints


cdef class _Request:
    cdef public str id
    cdef public list inputs
    cdef public list outputs


cdef class RestInferFastPath:
    cdef object _find
    cdef object _limits
    cdef object _timeout_in_ms
    cdef object _cors
    cdef object _json
    cdef object _format
    cdef bytes _ok_head
    cdef SignatureCache _signatures
    cdef RequestCounts _counts
    cdef bytes _last_path
    cdef tuple _last_route
    cdef bytes _last_name_text
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime

    @cython.locals(servable=BundleSignatures, signature=PredictSignature, ok=OkCounts,
                   runtime=OkCounts, start="long long", run_start="long long",
                   request=_Request)
    cpdef object answer(self, bytes path, bytes body, bint keep_alive)

    @cython.locals(tensors=dict, tensor=_Input, used=object, count=object)
    cdef dict _tensors(self, _Request request, object info)

    @cython.locals(parts=list, index=Py_ssize_t, answer=bytes, data=bytes)
    cdef bytes _response(self, str version, str request_id, object info, dict outputs,
                         list aliases, bint keep_alive)

    cdef bytes _encode_error(self, object error, bint keep_alive, str model_name)


@cython.locals(aliases=list)
cdef list _aliases(list outputs, object info)

cdef bint _is_int(bytes text)

@cython.locals(request=_Request, end=Py_ssize_t, pos=Py_ssize_t, first=bint, seen=set)
cdef _Request _read_request(bytes body)

@cython.locals(inputs=list, tensor=_Input)
cdef tuple _read_inputs(bytes body, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(first=bint, texts=list, shape=list, data=list, ints=bint)
cdef Py_ssize_t _read_input(bytes body, Py_ssize_t pos, Py_ssize_t end,
                            _Input tensor) except -1

@cython.locals(names=list)
cdef tuple _read_outputs(bytes body, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(texts=list, start=Py_ssize_t)
cdef tuple _read_numbers(bytes body, Py_ssize_t pos, Py_ssize_t end)

cdef Py_ssize_t _skip_space(bytes body, Py_ssize_t pos, Py_ssize_t end)

cdef Py_ssize_t _expect(bytes body, Py_ssize_t pos, Py_ssize_t end,
                        unsigned char byte) except -1

@cython.locals(start=Py_ssize_t, c="unsigned char")
cdef tuple _read_string(bytes body, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(start=Py_ssize_t)
cdef Py_ssize_t _read_number(bytes body, Py_ssize_t pos, Py_ssize_t end) except -1

@cython.locals(start=Py_ssize_t)
cdef Py_ssize_t _read_digits(bytes body, Py_ssize_t pos, Py_ssize_t end) except -1
