# cython: language_level=3
"""Compiled ``HttpProtocol``: the contract of ``_http_protocol_py.HttpProtocol``, its Python twin.

The same httptools parser drives the same callbacks with the same limits, timeouts, pipelining
order, rejections, connection cap and drain; the twin's tests run against both. What is cut is
the per-request Python around them:

* callbacks are C-level methods; limits are C integers, read once when the connection is made
  (``HttpServerLimits`` are fixed for a server's life);
* ``_last_activity`` comes from ``tfsfast._cdefs.clock.monotonic()``, the clock of
  ``time.monotonic()`` read in C, without a Python call or a float object per read;
* a request that can be answered at once (nothing queued or in progress) is offered to the REST
  fast path (its ``answer``; a scanned request to the compiled fast path's ``answer_plain``, a C
  method) before any ``HttpRequest`` is built; the fast path returns the finished response bytes
  or None, and then the request takes the general path: queued as an ``HttpRequest`` and given
  to the handler, exactly as in the twin. A batched answer comes back through
  ``deferred_done`` (``DeferredConnection``'s method, which this class overrides);
* with the compiled fast path, a head scanner serves complete plain-JSON POSTs that arrive
  between messages without any parser callback (``_http_head_scanner``); every other byte
  goes through httptools. While the connection drains, neither the scanner nor the immediate
  fast path are used: every request is queued first, as in the twin, so that the answers know
  which one is the last.

``scanned_requests`` counts the requests the scanner served (a diagnostic; the twin has none).

The access log, as in the twin: a line where each answer is written (a test of ``_access_log``
when there is none), the request's time ``_last_activity`` when its message completed (passed
down as a C double, kept in ``HttpRequest.received`` while it waits); the status and body size of
an encoded answer are read from its bytes in C.

Two implementations rather than one source compiled twice: the C-level callbacks, the head
scanner and the C calls into the compiled fast path have no Python form; the twin is the
readable reference the tests hold this module to.
"""

import asyncio
import logging
from collections import deque

import httptools

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from tfsfast.server.http._http_protocol_py import (
    HttpRequest,
    HttpResponse,
    _RequestTooLarge,
    encode_response,
    end_answers as _end_answers,
    stalled as _stalled,
    too_many_connections as _too_many_connections,
    unread_bytes,
)

from tfsfast._cdefs.clock cimport monotonic
from tfsfast.server.http._http_head_scanner cimport HeadScan, scan_head, scanned_headers
from tfsfast.server.http._rest_fast_path cimport DeferredConnection, RestFastPath

_log = logging.getLogger("tfsfast.server.http._http_protocol_py")

cdef object _HttpResponse = HttpResponse
cdef object _HttpRequest = HttpRequest
cdef object _encode_response = encode_response
cdef object _ParserUpgrade = httptools.HttpParserUpgrade
cdef object _ParserError = httptools.HttpParserError
cdef object _TooLarge = _RequestTooLarge
cdef object _ensure_future = asyncio.ensure_future
cdef object _running_loop_or_none = asyncio._get_running_loop
cdef object _unread_bytes = unread_bytes

# What _answer_fast did with a request.
cdef enum:
    _NOT_TAKEN = 0  # the handler answers it
    _ANSWERED = 1   # written
    _DEFERRED = 2   # batched: the connection is busy until deferred_done


cdef int _encoded_status(bytes data, Py_ssize_t *body_size) noexcept:
    """The status of an encoded response (``HTTP/1.1 200 OK`` ...; 0 when its status line
    holds none), its body's size in ``body_size``: ``encoded_status`` of the twin."""
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i
    cdef int status = 0
    body_size[0] = 0
    for i in range(n - 3):
        if s[i] == c'\r' and s[i + 1] == c'\n' and s[i + 2] == c'\r' and s[i + 3] == c'\n':
            body_size[0] = n - i - 4
            break
    if n < 12:
        return 0
    for i in range(9, 12):
        if s[i] < c'0' or s[i] > c'9':
            return 0
        status = status * 10 + (s[i] - c'0')
    return status


cdef long long _digits(bytes value) noexcept:
    """The value of 1 to 18 ASCII digits (what int() gives for them); -1 for anything else."""
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i
    cdef long long v = 0
    if n == 0 or n > 18:
        return -1
    for i in range(n):
        if s[i] < c'0' or s[i] > c'9':
            return -1
        v = v * 10 + (s[i] - c'0')
    return v


cdef tuple _described(object request):
    """(method, target, bytes in, received) of a request for the access log."""
    return (request.method, request.path, len(request.body), request.received)


cdef class _Done:
    """The done callback of an awaited handler result (carries the request: its keep-alive, its
    headers for the format of a 500, what the access log says of it)."""

    cdef HttpProtocol protocol
    cdef bint keep_alive
    cdef object request

    def __call__(self, task):
        self.protocol._done(task, self.keep_alive, self.request)


cdef class HttpProtocol(DeferredConnection):
    """One connection. ``handler`` turns an ``HttpRequest`` into an ``HttpResponse``.

    A handler may return the response or an awaitable of it; it must not raise (the REST handler
    turns every failure into an error response), but if it does, the client gets a 500 and the
    connection stays usable. ``fast_path`` (optional) is a ``RestFastPath`` tried first for each
    request; see the module docstring. What the connection answers itself comes from
    ``error_response``, in the request's format (see the twin). ``access_log`` (optional) gets
    a line per answer.
    """

    def __init__(self, handler, limits, error_response, connections=None, fast_path=None,
                 access_log=None):
        self._handler = handler
        self._access_log = access_log
        self._peer = None
        self._deferred_entry = None
        self._limits = limits
        self._error_response = error_response
        self._connections = connections
        self._max_body_bytes = limits.max_body_bytes
        self._max_url_bytes = limits.max_url_bytes
        self._max_header_bytes = limits.max_header_bytes
        self._max_header_count = limits.max_header_count
        self._max_pipelined_requests = limits.max_pipelined_requests
        self._fast_path = fast_path
        # The head scanner hands its requests to answer_plain, which only the compiled fast
        # path has; every other request goes to ``answer``, whichever the fast path is.
        self._compiled_fast_path = fast_path if isinstance(fast_path, RestFastPath) else None
        # The head scanner serves only the compiled fast path's requests.
        self._scanner = self._compiled_fast_path is not None
        self._at_boundary = True
        self.scanned_requests = 0
        self._parser = httptools.HttpRequestParser(self)
        self._feed_data = self._parser.feed_data
        self._get_method = self._parser.get_method
        self._should_keep_alive = self._parser.should_keep_alive
        self._transport = None
        self.loop = None
        self._url = None
        self._headers = {}
        self._header_bytes = 0
        self._body = None
        self._body_size = 0
        self._queue = deque()
        self._busy = False
        self._reading_paused = False
        self._closing = False
        self._draining = False
        self._task = None
        self._task_done = None
        self._deferred = None
        self._last_activity = monotonic()
        self._in_head = False
        self._in_body = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        self.loop = _running_loop_or_none()
        if self._access_log is not None:
            self._peer = transport.get_extra_info("peername")
        if self._connections is not None:
            if len(self._connections) >= self._limits.max_connections:
                self._reject(503, _too_many_connections(self._limits))
                return
            self._connections.add(self)

    def connection_lost(self, exc):
        self._closing = True
        self._queue.clear()
        if self._deferred is not None:
            self._deferred.cancel()  # its task is dropped if it has not run yet
            self._deferred = None
            if self._deferred_entry is not None:
                self._log_entry(self._deferred_entry, 499, 0)
                self._deferred_entry = None
        if self._connections is not None:
            self._connections.discard(self)

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def eof_received(self):
        return None

    def data_received(self, data):
        if self._closing:
            return  # all answered (a drain's half-close): what comes now is discarded
        self._last_activity = monotonic()
        cdef Py_ssize_t taken
        if self._at_boundary and self._scanner and not self._draining and type(data) is bytes:
            taken = self._serve_scanned(<bytes>data)
            if taken == PyBytes_GET_SIZE(data) or self._closing:
                return
            if taken:
                data = data[taken:]
        try:
            self._feed_data(data)
        except _ParserUpgrade:
            self._reject(400, "Protocol upgrades are not supported")
        except _ParserError as e:
            # httptools re-raises a callback's exception as its own error; find ours.
            cause = e.__context__ if isinstance(e.__context__, _TooLarge) else None
            if cause is not None:
                self._reject(cause.status, cause.message)
            else:
                self._reject(400, f"Malformed HTTP request: {e}")
        if self._draining and not self._busy:
            # Every request of ``data`` is queued by now, so the answers know which is last.
            self._next()

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self):
        self._at_boundary = False
        self._in_head = True
        self._url = None
        self._headers = {}
        self._header_bytes = 0
        self._body = None
        self._body_size = 0

    def on_url(self, bytes url):
        self._url = url if self._url is None else self._url + url
        if len(self._url) > self._max_url_bytes:
            raise _TooLarge(414, f"Request URI longer than {self._max_url_bytes} bytes")

    def on_header(self, bytes name, bytes value):
        self._header_bytes += len(name) + len(value) + 4
        if (self._header_bytes > self._max_header_bytes
                or len(self._headers) >= self._max_header_count):
            raise _TooLarge(
                431, f"Request headers exceed {self._max_header_count} fields or "
                     f"{self._max_header_bytes} bytes")
        name = name.lower()
        old = self._headers.get(name)
        if old is None:
            self._headers[name] = value
        else:
            self._headers[name] = old + b", " + value

    def on_headers_complete(self):
        self._in_head = False
        self._in_body = True
        cdef long long declared
        length = self._headers.get(b"content-length")
        if length is not None:
            declared = _digits(length)
            if declared < 0:  # not plain digits: int() decides, as in the twin
                try:
                    declared = int(length)
                except ValueError:
                    raise _TooLarge(400, "Invalid Content-Length header") from None
                except OverflowError:
                    declared = self._max_body_bytes + 1
            if declared > self._max_body_bytes:
                raise _TooLarge(413, self._body_too_large())

    def on_body(self, bytes body):
        self._body_size += len(body)
        if self._body_size > self._max_body_bytes:
            raise _TooLarge(413, self._body_too_large())
        if self._body is None:
            self._body = body
        elif type(self._body) is list:
            self._body.append(body)
        else:
            self._body = [self._body, body]

    def on_message_complete(self):
        self._at_boundary = True
        self._in_body = False
        cdef bytes body = self._take_body()
        cdef bytes url = self._url if self._url is not None else b""
        cdef bint keep_alive = self._should_keep_alive()
        cdef bytes method = self._get_method()
        # Nothing queued or in progress: the request is handled right now, as _next would
        # handle it, so the fast path may answer it before an HttpRequest exists (a pipelined
        # request waits its turn in the queue and is offered from _next, in order).
        if (not self._busy and not self._queue and not self._closing and not self._draining
                and self._max_pipelined_requests > 0):
            if self._fast_path is not None and method == b"POST":
                if self._answer_fast("POST", url, self._headers, body, keep_alive,
                                     self._last_activity) != _NOT_TAKEN:
                    return
                self._handle(_HttpRequest("POST", url, self._headers, body, keep_alive,
                                          self._last_activity), False)
            else:
                self._handle(_HttpRequest(method.decode("latin-1"), url, self._headers, body,
                                          keep_alive, self._last_activity), False)
            return
        request = _HttpRequest(method.decode("latin-1"), url, self._headers, body, keep_alive,
                               self._last_activity)
        self._queue.append(request)
        if (len(self._queue) > self._max_pipelined_requests
                and not self._reading_paused):
            self._reading_paused = True
            self._transport.pause_reading()
        if not self._busy and not self._draining:
            self._next()

    cdef Py_ssize_t _serve_scanned(self, bytes data) except -1:
        """Serves the complete plain requests at the start of ``data`` while the connection
        is idle; returns the bytes used (the rest goes to httptools)."""
        cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pos = 0, used
        cdef HeadScan scan
        cdef bytes url, body
        while (pos < n and not self._busy and not self._queue and not self._closing
               and self._max_pipelined_requests > 0):
            used = scan_head(s + pos, n - pos, &scan, self._max_url_bytes,
                             self._max_header_bytes, self._max_header_count,
                             self._max_body_bytes)
            if used == 0:
                break
            url = PyBytes_FromStringAndSize(<const char *>s + pos + scan.url.start,
                                            scan.url.end - scan.url.start)
            body = (PyBytes_FromStringAndSize(<const char *>s + pos + scan.body.start,
                                              scan.body.end - scan.body.start)
                    if scan.body.end > scan.body.start else b"")
            pos += used
            self.scanned_requests += 1
            # The state the parser callbacks leave behind a complete request.
            self._in_head = False
            self._in_body = False
            self._url = url
            self._header_bytes = scan.header_bytes
            self._body_size = scan.body.end - scan.body.start
            try:
                if self._answer_fast("POST", url, None, body, scan.keep_alive,
                                     self._last_activity) == _NOT_TAKEN:
                    self._headers = scanned_headers(s + pos - used, &scan)
                    self._handle(_HttpRequest("POST", url, self._headers, body,
                                              scan.keep_alive, self._last_activity), False)
            except Exception:
                # What httptools turns an exception out of on_message_complete into (answered
                # as JSON: the scanner takes plain JSON requests only).
                self._headers = {}
                self._reject(400, "Malformed HTTP request: `on_message_complete` callback error",
                             "POST")
                return n
        return pos

    cdef bytes _take_body(self):
        body = self._body
        self._body = None
        if body is None:
            return b""
        if type(body) is list:
            return b"".join(body)
        return <bytes>body

    def _body_too_large(self):
        return (f"Request body exceeds the maximum of {self._max_body_bytes} bytes "
                f"(flag --rest_api_max_body_bytes)")

    # --- handling ----------------------------------------------------------------------------

    cdef int _answer_fast(self, str method, bytes path, dict headers, bytes body,
                          bint keep_alive, double received) except -1:
        """Offers the request (complete at ``received``) to the fast path: writes its answer
        (_ANSWERED), leaves the connection busy until ``deferred_done`` (_DEFERRED), or leaves
        the request to the handler (_NOT_TAKEN)."""
        cdef int status
        cdef Py_ssize_t body_size
        keep_alive = self._keep_alive(keep_alive)
        try:
            if headers is None:  # scanned: a POST with plain JSON headers
                data = self._compiled_fast_path.answer_plain(path, body, keep_alive, self)
            else:
                data = self._fast_path.answer(method, path, headers, body, keep_alive, self)
        except Exception:
            response = self._internal_error(headers)
            self._write(response, keep_alive)
            if self._access_log is not None:
                self._log(method, path, PyBytes_GET_SIZE(body), received, response.status,
                          len(response.body))
            return _ANSWERED
        if data is None:
            return _NOT_TAKEN
        if type(data) is bytes:
            self._write_encoded(<bytes>data, keep_alive)
            if self._access_log is not None:
                status = _encoded_status(<bytes>data, &body_size)
                self._log(method, path, PyBytes_GET_SIZE(body), received, status, body_size)
            return _ANSWERED
        self._busy = True
        self._deferred = data
        self._deferred_keep_alive = keep_alive  # the reply's keep_alive, kept in C
        if self._access_log is not None:
            self._deferred_entry = (method, path, PyBytes_GET_SIZE(body), received)
        return _DEFERRED

    cpdef deferred_done(self, object reply):
        """The fast path's batched answer is ready (called on this connection's loop)."""
        self._deferred_done(reply)

    cdef _deferred_done(self, object reply):
        if reply is not self._deferred:
            return  # cancelled: the connection went away
        self._deferred = None
        cdef tuple entry = self._deferred_entry  # None without an access log
        self._deferred_entry = None
        self._busy = False
        self._last_activity = monotonic()
        if self._closing:
            if entry is not None:
                self._log_entry(entry, 499, 0)
            return
        cdef bint keep_alive = self._keep_alive(self._deferred_keep_alive)
        cdef Py_ssize_t body_size
        cdef int status
        try:
            data = reply.encode(keep_alive)
        except Exception:
            # The fast path answers plain JSON requests only.
            response = self._internal_error(None)
            self._write(response, keep_alive)
            if entry is not None:
                self._log_entry(entry, response.status, len(response.body))
        else:
            self._write_encoded(data, keep_alive)
            if entry is not None:
                status = _encoded_status(data, &body_size)
                self._log_entry(entry, status, body_size)
        self._next()

    cdef _next(self):
        while self._queue and not self._closing:
            request = self._queue.popleft()
            if self._reading_paused and len(self._queue) <= self._max_pipelined_requests:
                self._reading_paused = False
                self._transport.resume_reading()
            if not self._handle(request, True):
                return

    cdef bint _handle(self, object request, bint offer_fast) except -1:
        """Answers ``request`` (the fast path first when ``offer_fast``); False when the answer
        is awaited (the connection is then busy until ``_done``)."""
        cdef _Done done
        cdef int fast
        if offer_fast and self._fast_path is not None and request.method == "POST":
            fast = self._answer_fast(request.method, request.path, request.headers,
                                     request.body, request.keep_alive, request.received)
            if fast != _NOT_TAKEN:
                return fast == _ANSWERED
        try:
            result = self._handler(request)
        except Exception:
            result = self._internal_error(request.headers)
        if isinstance(result, _HttpResponse):
            self._write(result, request.keep_alive)
            if self._access_log is not None:
                self._log_request(request, result.status, len(result.body))
            return True
        self._busy = True
        task = _ensure_future(result)
        done = _Done.__new__(_Done)
        done.protocol = self
        done.keep_alive = request.keep_alive
        done.request = request
        task.add_done_callback(done)
        self._task = task
        self._task_done = done
        return False

    cdef _done(self, object task, bint keep_alive, object request):
        self._busy = False
        self._task = None
        self._task_done = None
        self._last_activity = monotonic()
        try:
            response = task.result()
        except Exception:
            response = self._internal_error(request.headers)
        if not self._closing:
            self._write(response, keep_alive)
            if self._access_log is not None:
                self._log_request(request, response.status, len(response.body))
            self._next()
        elif self._access_log is not None:
            self._log_request(request, 499, 0)

    cdef object _internal_error(self, object headers):
        """Logs the exception being handled; returns the 500 the client gets for it (for a
        request with ``headers``)."""
        _log.exception("HTTP handler failed")
        return self._error_response(500, "Internal server error", headers)

    cdef bint _keep_alive(self, bint keep_alive) except -1:
        """Whether the answer now written keeps the connection open: as the request asked,
        unless the connection drains and has nothing more to answer."""
        return keep_alive and not (self._draining and not self._more_to_answer())

    cdef bint _more_to_answer(self) except -1:
        """Requests received and not taken yet: queued, partly parsed, or still unread."""
        return (len(self._queue) > 0 or self._in_head or self._in_body
                or _unread_bytes(self._transport) > 0)

    cdef _write(self, object response, bint keep_alive):
        keep_alive = (self._keep_alive(keep_alive) and not response.close
                      and not self._closing)
        self._write_encoded(_encode_response(response, keep_alive), keep_alive)

    cdef _write_encoded(self, bytes data, bint keep_alive):
        transport = self._transport
        if transport is None or transport.is_closing() or self._closing:
            return  # gone, or half-closed: nothing may be written after the FIN
        transport.write(data)
        if not keep_alive:
            if self._draining:
                self._half_close()
            else:
                self._closing = True
                transport.close()

    cdef _half_close(self):
        """Ends the answers: FIN after what is written, then reads on, discarding, until the
        client closes (or ``close``); see the twin's module docstring."""
        self._closing = True
        _end_answers(self._transport, self._reading_paused)
        self._reading_paused = False

    cdef _reject(self, int status, str message, str method=None):
        """Answers a request that cannot be parsed or is over a limit, then closes; in the
        format of the headers read so far. ``method``: the request's, when the parser does not
        know it (a scanned request)."""
        self._queue.clear()
        response = self._error_response(status, message, self._headers)
        response.close = True
        self._write(response, False)
        if self._access_log is not None:
            self._log_entry(self._request_so_far(method), status, len(response.body))

    def check_idle(self, double now):
        """Closes the connection if it stalled past a timeout (called by the server's sweep)."""
        if self._busy or self._queue or self._closing:
            return
        idle = now - self._last_activity
        if self._in_head or self._in_body:
            rejection = _stalled(self._limits, self._in_head, self._in_body, idle)
            if rejection is not None:
                self._reject(rejection[0], rejection[1])
        elif idle > self._limits.keep_alive_timeout and self._transport is not None:
            self._closing = True
            self._transport.close()

    # --- the drain (see the twin) ---------------------------------------------------------

    def drain(self):
        """The listener has closed: answer what was received, then close."""
        if self._closing or self._draining:
            return
        self._draining = True
        if not self._busy and not self._more_to_answer():
            self._half_close()

    @property
    def in_progress(self):
        """Whether a request received is not answered yet (or is partly received)."""
        return not self._closing and (self._busy or self._more_to_answer())

    def answer_in_progress(self, str message):
        """The drain's deadline: a 503 ``message`` for every request received and not answered
        yet, in order, the last saying ``Connection: close``; then the half-close."""
        if self._closing:
            return
        cdef list unanswered = []
        # What the access log says of each: (method, target, bytes in, received).
        cdef list requests = []
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
            unanswered.append(None)  # the fast path takes plain JSON requests only
            requests.append(self._deferred_entry)  # None without an access log
            self._deferred_entry = None
        elif self._task is not None:
            self._task.remove_done_callback(self._task_done)
            self._task.cancel()
            request = (<_Done>self._task_done).request
            unanswered.append(request.headers)
            requests.append(_described(request))
            self._task = None
            self._task_done = None
        for request in self._queue:
            unanswered.append(request.headers)
            requests.append(_described(request))
        self._queue.clear()
        self._busy = False
        if self._in_head or self._in_body:
            unanswered.append(self._headers)
            requests.append(self._request_so_far(None))
        elif _unread_bytes(self._transport) > 0:
            unanswered.append(None)
            requests.append(("", b"", 0, self._last_activity))
        transport = self._transport
        cdef Py_ssize_t i
        for i in range(len(unanswered)):
            response = self._error_response(503, message, unanswered[i])
            if transport is not None and not transport.is_closing():
                transport.write(_encode_response(response, i < len(unanswered) - 1))
            if self._access_log is not None and requests[i] is not None:
                self._log_entry(<tuple>requests[i], 503, len(response.body))
        self._draining = True
        self._half_close()

    # --- the access log (called with one only) ---------------------------------------------

    cdef _log(self, str method, bytes target, Py_ssize_t bytes_in, double received, int status,
              Py_ssize_t bytes_out):
        self._access_log.record_rest(received, self._peer, method, target, status, bytes_in,
                                     bytes_out)

    cdef _log_request(self, object request, int status, Py_ssize_t bytes_out):
        self._log(request.method, request.path, len(request.body), request.received, status,
                  bytes_out)

    cdef _log_entry(self, tuple entry, int status, Py_ssize_t bytes_out):
        """``entry``: (method, target, bytes in, received)."""
        self._log(entry[0], entry[1], entry[2], entry[3], status, bytes_out)

    cdef tuple _request_so_far(self, str method):
        """(method, target, bytes in, received) of the request being parsed, as far as it was:
        the method once the target has begun (the parser knows it by then), unless given."""
        if method is None:
            method = self._get_method().decode("latin-1") if self._url is not None else ""
        return (method, self._url if self._url is not None else b"", self._body_size,
                self._last_activity)

    def close(self, bint force=True):
        """Closes the connection after what it has written; unless ``force``, not while bytes
        the client sent are still to be read (closing would reset the connection). Returns
        whether it closed."""
        if not force and _unread_bytes(self._transport) > 0:
            return False
        self._closing = True
        if self._transport is not None:
            self._transport.close()
        return True
