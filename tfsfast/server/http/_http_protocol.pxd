# The compiled HTTP/1.1 protocol: declarations. See _http_protocol.pyx; _http_protocol_py.py holds
# the pure-Python twin (HttpProtocol) and the shared request/response types.

from tfsfast.server.http._rest_fast_path cimport DeferredConnection, RestFastPath


cdef class HttpProtocol(DeferredConnection):
    cdef object _handler
    cdef object _limits
    cdef object _error_response
    cdef object _connections
    cdef object _parser
    cdef object _feed_data
    cdef object _get_method
    cdef object _should_keep_alive
    cdef object _transport
    # The event loop the connection was made on (None outside one): the loop its batched
    # answers come back on, read by the fast path without asking asyncio per request.
    cdef readonly object loop
    cdef object _fast_path
    cdef RestFastPath _compiled_fast_path
    # HttpServerLimits read once, when the connection is made.
    cdef Py_ssize_t _max_body_bytes
    cdef Py_ssize_t _max_url_bytes
    cdef Py_ssize_t _max_header_bytes
    cdef Py_ssize_t _max_header_count
    cdef Py_ssize_t _max_pipelined_requests
    # The request being parsed.
    cdef object _url
    cdef dict _headers
    cdef Py_ssize_t _header_bytes
    cdef object _body
    cdef Py_ssize_t _body_size
    # Requests parsed and waiting for their turn; the one being handled.
    cdef object _queue
    cdef bint _busy
    cdef bint _reading_paused
    cdef bint _closing
    # Set by drain(): the listener has closed (see the twin's module docstring).
    cdef bint _draining
    # The fast path's BatchedReply while a batched request is out (the connection is busy),
    # and the keep_alive it was given.
    cdef object _deferred
    cdef bint _deferred_keep_alive
    # The handler's task and its _Done callback while its answer is awaited.
    cdef object _task
    cdef object _task_done
    # For the idle sweep.
    cdef public double _last_activity
    cdef bint _in_head
    cdef bint _in_body
    # The head scanner: on when the fast path is compiled; used only between messages.
    cdef bint _scanner
    cdef bint _at_boundary
    # Requests the scanner took (a diagnostic; the twin has no scanner).
    cdef readonly Py_ssize_t scanned_requests
    # The access log (None: off); the peer's address, read when the connection is made (with a
    # log only); while a batched answer is out with a log, its request's
    # (method, target, bytes in, received).
    cdef object _access_log
    cdef object _peer
    cdef tuple _deferred_entry

    cdef bytes _take_body(self)
    cdef Py_ssize_t _serve_scanned(self, bytes data) except -1
    cdef int _answer_fast(self, str method, bytes path, dict headers, bytes body,
                          bint keep_alive, double received) except -1
    cdef _next(self)
    cdef bint _handle(self, object request, bint offer_fast) except -1
    cdef _done(self, object task, bint keep_alive, object request)
    cpdef deferred_done(self, object reply)
    cdef _deferred_done(self, object reply)
    cdef object _internal_error(self, object headers)
    cdef bint _keep_alive(self, bint keep_alive) except -1
    cdef bint _more_to_answer(self) except -1
    cdef _write(self, object response, bint keep_alive)
    cdef _write_encoded(self, bytes data, bint keep_alive)
    cdef _half_close(self)
    cdef _reject(self, int status, str message, str method=*)
    cdef tuple _request_so_far(self, str method)
    cdef _log(self, str method, bytes target, Py_ssize_t bytes_in, double received, int status,
              Py_ssize_t bytes_out)
    cdef _log_request(self, object request, int status, Py_ssize_t bytes_out)
    cdef _log_entry(self, tuple entry, int status, Py_ssize_t bytes_out)
