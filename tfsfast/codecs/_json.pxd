# The compiled JSON codec's entry points for compiled callers (``from tfsfast.codecs cimport
# _json``): ``JsonCodec.parse_request`` and ``format_response`` are ``parse_predict_request`` and
# ``format_predict_response`` (same arguments, results and errors) called as C functions, without
# the Python call and its argument parsing (~130 and ~290 instructions a call). A module that
# cimports them needs this compiled module at import. The C declarations the codec itself uses
# are in ``_json_c.pxd``.

from libc.stdint cimport int64_t


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
