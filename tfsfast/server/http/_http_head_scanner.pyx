# cython: language_level=3
"""The compiled HTTP protocol's head scanner: complete plain-JSON POSTs recognised in C.

The one request shape that dominates REST traffic, recognised so that it costs no parser
callbacks: a complete ``POST <target> HTTP/1.1`` with plain CRLF header lines, an optional
``Content-Length`` and its whole body, and headers that ask for JSON in and out. Anything the
scanner is not sure about (another method or version, chunked bodies, Connection values other
than keep-alive/close, Upgrade, obs-fold, empty or padded values, unusual bytes, a limit within
reach, an incomplete request) is left to httptools, byte for byte, so only requests that
httptools parses to exactly the same URL, headers and body are ever taken here.

Compiled only, with no Python twin: it is a C-level shortcut inside the compiled
``_http_protocol`` (cimported, see ``_http_head_scanner.pxd``), and its reference is httptools
itself, which parses every request in the pure-Python protocol. The differential test
(``tests/unit/server/test_http_protocol_scanner.py``) feeds the same bytes to both protocols.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcmp


cdef enum:
    _H_OTHER = 0
    _H_CONTENT_LENGTH
    _H_CONTENT_TYPE
    _H_CONTENT_ENCODING
    _H_ACCEPT
    _H_CONNECTION
    _H_DEFER  # transfer-encoding, upgrade: httptools' business; V2's binary data header,
              # which the fast paths must see (answer() declines it)


cdef inline bint _is_token(unsigned char c) noexcept:
    return (c'a' <= c <= c'z') or (c'A' <= c <= c'Z') or (c'0' <= c <= c'9') or c == c'-'


cdef inline bint _is_target(unsigned char c) noexcept:
    # Unreserved, sub-delims, ':', '@', '/', '?', '%' (no '#', quotes, brackets or controls):
    # bytes llhttp accepts anywhere in a path or query.
    if (c'a' <= c <= c'z') or (c'A' <= c <= c'Z') or (c'0' <= c <= c'9'):
        return True
    return c in b"-._~/:?=&%+,;@!$'()*"


cdef inline bint _is_value(unsigned char c) noexcept:
    return 0x21 <= c <= 0x7E or c == c' ' or c == c'\t'


cdef bint _equals_lower(const unsigned char *s, Py_ssize_t n, const char *lower) noexcept:
    """Whether s[:n] is ``lower`` (a lower-case literal), ignoring ASCII case."""
    cdef Py_ssize_t i
    for i in range(n):
        if lower[i] == 0 or _lower(s[i]) != <unsigned char>lower[i]:
            return False
    return lower[n] == 0


cdef inline unsigned char _lower(unsigned char c) noexcept:
    return c + 32 if c'A' <= c <= c'Z' else c


cdef int _header_kind(const unsigned char *s, Py_ssize_t n) noexcept:
    if n == 14 and _equals_lower(s, n, b"content-length"):
        return _H_CONTENT_LENGTH
    if n == 12 and _equals_lower(s, n, b"content-type"):
        return _H_CONTENT_TYPE
    if n == 16 and _equals_lower(s, n, b"content-encoding"):
        return _H_CONTENT_ENCODING
    if n == 6 and _equals_lower(s, n, b"accept"):
        return _H_ACCEPT
    if n == 10 and _equals_lower(s, n, b"connection"):
        return _H_CONNECTION
    if ((n == 17 and _equals_lower(s, n, b"transfer-encoding"))
            or (n == 7 and _equals_lower(s, n, b"upgrade"))
            or (n == 31 and _equals_lower(s, n, b"inference-header-content-length"))):
        return _H_DEFER
    return _H_OTHER


cdef bint _is_json_media(const unsigned char *s, Py_ssize_t n) noexcept:
    """``[OWS] application/json [OWS] [";" ...]`` without "msgpack" anywhere, ignoring case
    (``RestFastPath``'s rule)."""
    cdef Py_ssize_t i = 0
    for i in range(n - 6):
        if _equals_lower(s + i, 7, b"msgpack"):
            return False
    i = 0
    while i < n and (s[i] == c' ' or s[i] == c'\t'):
        i += 1
    if n - i < 16 or not _equals_lower(s + i, 16, b"application/json"):
        return False
    i += 16
    while i < n and (s[i] == c' ' or s[i] == c'\t'):
        i += 1
    return i == n or s[i] == c';'


cdef Py_ssize_t scan_head(const unsigned char *s, Py_ssize_t n, HeadScan *out,
                          Py_ssize_t max_url, Py_ssize_t max_header_bytes,
                          Py_ssize_t max_headers, Py_ssize_t max_body) noexcept:
    """Bytes taken by one complete, plain request at ``s`` (filling ``out``), or 0: leave the
    bytes to httptools."""
    cdef Py_ssize_t i, j, start, end
    cdef Py_ssize_t content_length = 0
    cdef int kind
    cdef bint seen_length = False, seen_type = False, seen_accept = False
    cdef bint seen_connection = False
    out.n_headers = 0
    out.header_bytes = 0
    out.keep_alive = True
    # Request line.
    if n < 16 or s[0] != c'P' or s[1] != c'O' or s[2] != c'S' or s[3] != c'T' or s[4] != c' ':
        return 0
    i = 5
    start = i
    while i < n and _is_target(s[i]):
        i += 1
    if i == start or i - start > max_url or s[start] != c'/':
        return 0
    out.url.start = start
    out.url.end = i
    if n - i < 11 or memcmp(s + i, b" HTTP/1.1\r\n", 11) != 0:
        return 0
    i += 11
    # Header lines.
    while True:
        if i + 1 >= n:
            return 0
        if s[i] == c'\r':
            if s[i + 1] != c'\n':
                return 0
            i += 2
            break
        start = i
        while i < n and _is_token(s[i]):
            i += 1
        if i == start or i >= n or s[i] != c':':
            return 0
        end = i
        i += 1
        while i < n and (s[i] == c' ' or s[i] == c'\t'):
            i += 1
        j = i
        while i < n and _is_value(s[i]):
            i += 1
        if i + 1 >= n or s[i] != c'\r' or s[i + 1] != c'\n':
            return 0
        if i == j or s[i - 1] == c' ' or s[i - 1] == c'\t':
            return 0  # empty or padded values: httptools' way of handling them decides
        if out.n_headers >= MAX_SCANNED_HEADERS or out.n_headers + 1 >= max_headers:
            return 0
        out.names[out.n_headers].start = start
        out.names[out.n_headers].end = end
        out.values[out.n_headers].start = j
        out.values[out.n_headers].end = i
        out.n_headers += 1
        out.header_bytes += (end - start) + (i - j) + 4
        if out.header_bytes > max_header_bytes:
            return 0
        kind = _header_kind(s + start, end - start)
        if kind == _H_DEFER:
            return 0
        elif kind == _H_CONTENT_LENGTH:
            if seen_length or i - j > 18:
                return 0
            seen_length = True
            for start in range(j, i):
                if s[start] < c'0' or s[start] > c'9':
                    return 0
                content_length = content_length * 10 + (s[start] - c'0')
        elif kind == _H_CONNECTION:
            if seen_connection:
                return 0
            seen_connection = True
            if _equals_lower(s + j, i - j, b"close"):
                out.keep_alive = False
            elif not _equals_lower(s + j, i - j, b"keep-alive"):
                return 0
        elif kind == _H_CONTENT_ENCODING:
            return 0
        elif kind == _H_CONTENT_TYPE:
            if seen_type or not _is_json_media(s + j, i - j):
                return 0
            seen_type = True
        elif kind == _H_ACCEPT:
            if seen_accept:
                return 0
            seen_accept = True
            if not (_equals_lower(s + j, i - j, b"*/*")
                    or (i - j == 16 and memcmp(s + j, b"application/json", 16) == 0)):
                return 0
        i += 2
    if content_length > max_body or n - i < content_length:
        return 0
    out.body.start = i
    out.body.end = i + content_length
    return i + content_length


cdef dict scanned_headers(const unsigned char *s, HeadScan *scan):
    """The headers as the on_header callback collects them: lower-case names, repeated
    headers joined by ", "."""
    cdef dict headers = {}
    cdef int k
    for k in range(scan.n_headers):
        name = PyBytes_FromStringAndSize(<const char *>s + scan.names[k].start,
                                         scan.names[k].end - scan.names[k].start).lower()
        value = PyBytes_FromStringAndSize(<const char *>s + scan.values[k].start,
                                          scan.values[k].end - scan.values[k].start)
        old = headers.get(name)
        headers[name] = value if old is None else old + b", " + value
    return headers
