# The C declarations that make _infer_fast_path_py.py, the one source of the gRPC ModelInfer fast
# path (its contract is there), the compiled module tfsfast.server.v2._infer_fast_path: Cython
# compiles that file with these declarations (pure Python mode). The compiled signature step,
# RunCost and request counts are cimported under the names the file gives their twins, so their
# methods and the clock are called in C.

import cython

from tfsfast.monitoring cimport _request_counts
from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts
from tfsfast.server.predict cimport _predict_signatures
from tfsfast.server.predict._predict_signatures cimport (
    BundleSignatures,
    PredictSignature,
    SignatureCache,
)
from tfsfast.util._run_cost cimport RunCost


cdef class InferFastPath:
    cdef object _find
    cdef object _costs
    cdef object _fallback
    cdef Py_ssize_t _max_inline_bytes
    cdef object _limits
    cdef SignatureCache _signatures
    cdef RequestCounts _counts
    cdef str _last_name
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime

    cpdef object answer(self, object data, object context)

    @cython.locals(servable=BundleSignatures, signature=PredictSignature, cost=RunCost,
                   timeout=Py_ssize_t, version=Py_ssize_t, run_start=Py_ssize_t,
                   run_ns=Py_ssize_t, ok=OkCounts)
    cdef object _answer(self, object data, object context, Py_ssize_t begun)

    @cython.locals(tensors=dict, n=Py_ssize_t, index=Py_ssize_t)
    cdef object _inputs(self, object request, object info)


@cython.locals(aliases=list, datatypes=list)
cdef tuple _outputs(object request, object info)

@cython.locals(parts=list, raws=list, index=Py_ssize_t)
cdef bytes _response(str model_name, str model_version, str request_id, object info,
                     dict outputs, list aliases, list datatypes)

cdef class _Tensor:
    cdef public str name
    cdef public str datatype
    cdef public tuple shape


cdef class _Request:
    cdef public str model_name
    cdef public str model_version
    cdef public str id
    cdef public list inputs
    cdef public list outputs
    cdef public list raw_input_contents


@cython.locals(request=_Request, tensor=_Tensor, pos=Py_ssize_t, end=Py_ssize_t,
               start=Py_ssize_t, tag="unsigned long long", number="unsigned long long",
               wire_type=int)
cdef _Request _read_request(bytes data)

@cython.locals(tag="unsigned long long", number="unsigned long long", wire_type=int,
               start=Py_ssize_t, key=str)
cdef bint _ignored_parameter(bytes data, Py_ssize_t pos, Py_ssize_t end) except -1

@cython.locals(tag="unsigned long long", number="unsigned long long", wire_type=int,
               start=Py_ssize_t)
cdef bint _valid_parameter_value(bytes data, Py_ssize_t pos, Py_ssize_t end) except -1

@cython.locals(tensor=_Tensor, shape=list, tag="unsigned long long",
               number="unsigned long long", wire_type=int, size="unsigned long long",
               start=Py_ssize_t)
cdef _Tensor _read_tensor(bytes data, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(tag="unsigned long long", number="unsigned long long", wire_type=int,
               start=Py_ssize_t)
cdef str _read_output(bytes data, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(result="unsigned long long", shift=int, byte="unsigned char")
cdef tuple _read_varint(bytes data, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(size="unsigned long long")
cdef tuple _read_payload(bytes data, Py_ssize_t pos, Py_ssize_t end)

cdef Py_ssize_t _skip(bytes data, Py_ssize_t pos, Py_ssize_t end, int wire_type) except -1

@cython.locals(out=bytearray)
cdef bytes _varint(object value)

cdef bytes _field(int number, bytes payload)

cdef bytes _string(int number, str value)
