# The C declarations that make _predict_signatures_py.py, the one source of predict's signature
# step (its contracts are there), the compiled module tfsfast.server.predict._predict_signatures:
# Cython compiles that file with these declarations (pure Python mode). The compiled fast paths
# cimport these classes and call SignatureCache.of and BundleSignatures.get in C.

cdef class PredictSignature:
    cdef readonly object signature
    cdef readonly object key
    cdef readonly object inputs
    cdef readonly bint defaults
    cdef readonly dict output_dtypes
    cdef readonly list order
    cdef readonly object batcher
    cdef public object cost

    cpdef dict decode_inputs(self, dict inputs, object decode_tensor)
    cpdef list output_aliases(self, object output_filter)


cdef class BundleSignatures:
    cdef readonly object bundle
    cdef readonly object servable_id
    cdef readonly object run
    cdef readonly object run_inline
    cdef readonly object batching
    cdef bint _enforce
    cdef dict _input_dtypes
    cdef dict _signatures

    cpdef PredictSignature get(self, str signature_name)


cdef class SignatureCache:
    cdef bint _enforce
    cdef dict _bundles

    cpdef BundleSignatures of(self, object bundle, object servable_id)
