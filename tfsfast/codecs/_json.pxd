# The compiled JSON codec's entry points for compiled callers (``from tfsfast.codecs cimport
# _json``): ``parse_request`` and ``format_response`` are ``parse_predict_request`` and
# ``format_predict_response`` (same arguments, results and errors) called as C functions, without
# the Python call and its argument parsing (~130 and ~290 instructions a call). A module that
# cimports them needs this compiled module at import. The C declarations the codec itself uses
# are in ``_json_c.pxd``.

cdef object parse_request(object body, object input_dtypes)
cdef object format_response(object outputs, bint columnar, object output_dtypes)
