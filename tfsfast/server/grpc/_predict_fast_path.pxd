# The C declarations that make _predict_fast_path_py.py, the one source of the gRPC Predict fast
# path (its contract is there), the compiled module tfsfast.server.grpc._predict_fast_path:
# Cython compiles that file with these declarations (pure Python mode). The compiled signature
# step, RunCost and request counts are cimported under the names the file gives their twins, so
# their methods and the clock are called in C.

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


cdef class PredictFastPath:
    cdef object _find
    cdef object _label_version
    cdef object _costs
    cdef object _fallback
    cdef bint _tensor_content
    cdef Py_ssize_t _max_inline_bytes
    cdef object _decode_tensor
    cdef SignatureCache _signatures
    cdef RequestCounts _counts
    cdef str _last_name
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime

    cpdef object answer(self, object data, object context)

    @cython.locals(servable=BundleSignatures, signature=PredictSignature, cost=RunCost,
                   timeout=Py_ssize_t, aliases=list, run_start=Py_ssize_t, run_ns=Py_ssize_t,
                   ok=OkCounts)
    cdef object _answer(self, object data, object context, Py_ssize_t begun)
