# The compiled JSON codec's types and entry points for compiled callers (``from tfsfast.codecs
# cimport _json``): ``PredictRequest``, whose fields they read as C struct members;
# ``JsonCodec.parse_request`` and ``format_response``, which are ``parse_predict_request`` and
# ``format_predict_response`` (same arguments, results and errors) called as C functions, without
# the Python call and its argument parsing (~130 and ~290 instructions a call); ``new_request``
# and ``as_request``, for the compiled msgpack codec's requests. A module that cimports them needs
# this compiled module at import. The C declarations the codec itself uses are in ``_json_c.pxd``.

from libc.stdint cimport int64_t


cdef class PredictRequest:
    # The twin's fields (``_json_py.PredictRequest``), typed.
    cdef public str signature_name
    cdef public dict inputs
    cdef public bint columnar


# A request with these fields, made without calling ``PredictRequest.__init__``.
cdef PredictRequest new_request(str signature_name, dict inputs, bint columnar)
# The compiled request with the fields of ``twin_request``, a twin's ``PredictRequest`` (what
# the twin codecs return for the bodies the compiled ones hand over to them).
cdef PredictRequest as_request(object twin_request)


cdef class JsonCodec:
    cdef readonly object limits  # the CodecLimits it was made with
    cdef object _twin  # _json_py.JsonCodec(limits): the bodies the C pass does not take
    # The limits for the C pass, clamped to what it can use.
    cdef int _depth, _digits
    cdef int64_t _tensor, _request
    # The limits for the checks after it, clamped so that they keep their outcome.
    cdef int64_t _rank, _tensor_cmp, _request_cmp

    cdef object parse_request(self, object body, object input_dtypes)


cdef object format_response(object outputs, bint columnar, object output_dtypes)
