# The compiled HTTP protocol's head scanner: declarations. See _http_head_scanner.pyx.

cdef enum:
    MAX_SCANNED_HEADERS = 32

cdef struct Span:
    Py_ssize_t start
    Py_ssize_t end

# One scanned request, offsets relative to where the scan started.
cdef struct HeadScan:
    Span url
    Span body
    int n_headers
    Span names[MAX_SCANNED_HEADERS]
    Span values[MAX_SCANNED_HEADERS]
    Py_ssize_t header_bytes  # as the parser callbacks count them, for the header limit
    bint keep_alive

# Bytes taken by one complete, plain request at ``s`` (filling ``out``), or 0: leave the bytes to
# httptools. The limits are the connection's HttpServerLimits.
cdef Py_ssize_t scan_head(const unsigned char *s, Py_ssize_t n, HeadScan *out,
                          Py_ssize_t max_url, Py_ssize_t max_header_bytes,
                          Py_ssize_t max_headers, Py_ssize_t max_body) noexcept

# The headers of a scanned request as the on_header callback collects them.
cdef dict scanned_headers(const unsigned char *s, HeadScan *scan)
