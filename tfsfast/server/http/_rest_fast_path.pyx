# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled REST predict fast path; the same contract as ``_rest_fast_path_py`` (its twin).

What differs is only how: the headers are checked in C without building strings, the route of
the last URL is remembered (a server sees the same few URLs again and again), the 200 response
is assembled in one allocation from a prefix built once, and the compiled protocol's head
scanner calls ``answer_plain`` as a C method. The steps are the handler's, composed as in the
twin: the route is ``predict_route.predict_model_spec``, the signatures the compiled
``predict_signatures`` (``SignatureCache.of`` and ``BundleSignatures.get`` called in C), the
codec, ``bundle.run_inline`` and the error encoding are the same code the handler calls, so all
three answer with the same bytes. Batched requests are answered later through a
``BatchedReply``, as in the twin.

Two implementations rather than one source compiled twice: the header checks over raw bytes and
the one-allocation response are C code with no Python counterpart worth having; the steps are
shared code, written once in ``tfsfast.server.predict``.

The counts (see the twin) go to a compiled ``RequestCounts``: an OK answer adds to a C counter
and a C histogram (``OkCounts.record``, the start from the C clock), with no Python call.
"""

import asyncio
import logging

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts, monotonic_ns
from tfsfast.server.predict._predict_signatures cimport (
    BundleSignatures,
    PredictSignature,
    SignatureCache,
)

from tfsfast.codecs import json_codec
from tfsfast.server.http._http_protocol_py import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.server.predict.predict_route import predict_model_spec
from tfsfast.util.status import ServingError, to_http_status

from tfsfast.core.handle_table import LATEST as _LATEST_POLICY

cdef object LATEST = _LATEST_POLICY
cdef object _ServingError = ServingError
cdef object _get_running_loop = asyncio.get_running_loop
cdef object _predict_model_spec = predict_model_spec
_log = logging.getLogger("tfsfast.server.http.rest_fast_path")

# The URL step: (model name, version or None) of a predict URL the fast path takes, else None.
route = predict_model_spec


cdef inline unsigned char _lower(unsigned char c) noexcept:
    return c + 32 if c'A' <= c <= c'Z' else c


cdef bint _is_json_media(bytes value):
    """``[OWS] application/json [OWS] [";" ...]`` without "msgpack" anywhere, ignoring case: the
    twin's split/strip/lower comparison without building the pieces."""
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef Py_ssize_t i = 0, j
    cdef const char *want = b"application/json"
    cdef const char *avoid = b"msgpack"
    for i in range(n - 6):
        for j in range(7):
            if _lower(s[i + j]) != <unsigned char>avoid[j]:
                break
        else:
            return False
    i = 0
    while i < n and (s[i] == c' ' or s[i] == c'\t'):
        i += 1
    if n - i < 16:
        return False
    for j in range(16):
        if _lower(s[i + j]) != <unsigned char>want[j]:
            return False
    i += 16
    while i < n and (s[i] == c' ' or s[i] == c'\t'):
        i += 1
    return i == n or s[i] == c';'


def plain_json(dict headers):
    """Whether the headers ask for nothing but a JSON body in and a JSON answer out."""
    return _plain_json(headers)


cdef bint _plain_json(dict headers):
    if b"content-encoding" in headers:
        return False
    value = headers.get(b"content-type")
    if value is not None and (type(value) is not bytes or not _is_json_media(<bytes>value)):
        return False
    value = headers.get(b"accept")
    return value is None or value == b"*/*" or value == b"application/json"


cdef bytes _CONTENT_LENGTH = b"Content-Length: "
cdef bytes _CLOSE = b"Connection: close\r\n"


cdef bytes _encode_ok(bytes head, bytes body, bint keep_alive):
    """``head`` + Content-Length [+ Connection: close] + blank line + ``body`` in one bytes:
    what ``encode_response`` writes for a 200 (``head`` is its status line and headers)."""
    cdef Py_ssize_t nb = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t nh = PyBytes_GET_SIZE(head)
    cdef char digits[24]
    cdef int nd = 0, k
    cdef Py_ssize_t v = nb
    while True:
        digits[nd] = <char>(c'0' + v % 10)
        nd += 1
        v //= 10
        if v == 0:
            break
    cdef Py_ssize_t total = nh + 16 + nd + 2 + (0 if keep_alive else 19) + 2 + nb
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *o = PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(head), nh)
    o += nh
    memcpy(o, PyBytes_AS_STRING(_CONTENT_LENGTH), 16)
    o += 16
    for k in range(nd):
        o[k] = digits[nd - 1 - k]
    o += nd
    o[0] = c'\r'
    o[1] = c'\n'
    o += 2
    if not keep_alive:
        memcpy(o, PyBytes_AS_STRING(_CLOSE), 19)
        o += 19
    o[0] = c'\r'
    o[1] = c'\n'
    o += 2
    memcpy(o, PyBytes_AS_STRING(body), nb)
    return out


# The header of V2's binary tensor data extension: such a request is the handler's.
_V2_BINARY = b"inference-header-content-length"


cdef class RestFastPath:
    """The predict fast path in front of ``HttpRestApiHandler``; see ``_rest_fast_path_py``.

    ``find`` is the manager's handle-table lookup; ``options`` must be the handler's.
    """

    def __init__(self, find, options=None):
        self._find = find
        if options is None:
            options = RestApiOptions()
        # A JSON codec as the handler's (made with the same limits), its methods bound once.
        codec = json_codec.JsonCodec(options.codec_limits)
        self._parse = codec.parse_predict_request
        self._format = codec.format_predict_response
        self._format_error = codec.format_error
        self._timeout_in_ms = options.timeout_in_ms
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        # encode_response's bytes up to Content-Length, for a 200 with these headers.
        full = encode_response(HttpResponse(200, b"", headers=self._cors), True)
        self._ok_head = full[:full.index(_CONTENT_LENGTH)]
        self._signatures = SignatureCache(options.enforce_signature_method_name)
        self._last_path = None
        self._last_route = None
        self._counts = RequestCounts("REST")
        # The last route's OK and runtime counts (made with its first answer).
        self._last_ok = None
        self._last_runtime = None
        # The V2 infer fast path, offered the requests that are not a /v1 predict (for_core).
        self.v2 = None

    cpdef object answer(self, str method, bytes path, dict headers, bytes body,
                        bint keep_alive, object connection=None):
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``); a
        ``BatchedReply`` when the run was batched for ``connection``; or None: hand the request
        to the handler."""
        if method != "POST" or not _plain_json(headers) or _V2_BINARY in headers:
            return None
        return self.answer_plain(path, body, keep_alive, connection)

    cdef object answer_plain(self, bytes path, bytes body, bint keep_alive, object connection):
        """``answer`` for a POST whose headers the caller found plain (``plain_json``)."""
        cdef long long start = monotonic_ns()
        cdef tuple spec = self._route(path)
        if spec is None:
            # Not a /v1 predict: V2's infer, if it is one (the scanner leaves a request with
            # binary data to httptools, and answer() declines it).
            return self.v2.answer(path, body, keep_alive) if self.v2 is not None else None
        entry = self._find(spec[0], spec[1], LATEST)
        if entry is None:
            return None
        cdef BundleSignatures servable = self._signatures.of(entry.servable, entry.id)
        if servable.run_inline is None:
            return None  # not a SavedModelBundle: the handler decides what it gets
        cdef PredictSignature signature
        try:
            parsed = self._parse(body, servable)
            signature = servable.get(parsed.signature_name)
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        cdef str model_name = spec[0]
        cdef OkCounts ok = self._last_ok
        cdef OkCounts runtime = self._last_runtime
        if ok is None:
            ok = self._last_ok = self._counts.ok_counts(model_name, "predict")
            runtime = self._last_runtime = self._counts.runtime_counts(model_name, "Predict")
        if servable.batching is not None:
            if connection is None or signature.batcher is None:
                return None  # not batched: the handler runs it alone
            return self._schedule(signature, entry, parsed, connection, keep_alive, model_name,
                                  ok, runtime, start)
        cdef long long run_start = monotonic_ns()
        try:
            outputs = servable.run_inline(signature.key, parsed.inputs, None,
                                          self._timeout_in_ms, None)
        except _ServingError as e:
            return self._encode_error(e, keep_alive, model_name)
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        runtime.record(run_start)
        return self._encode_outputs(outputs, parsed.columnar, signature.output_dtypes,
                                    keep_alive, model_name, ok, start)

    cdef object _schedule(self, PredictSignature signature, object entry, object parsed,
                          object connection, bint keep_alive, str model_name, OkCounts ok,
                          OkCounts runtime, long long start):
        cdef BatchedReply reply
        # The connection's loop, read once when it was made: asyncio's own lookup costs a
        # getpid(2) per call (CPython 3.11 checks the loop's process on every call).
        loop = getattr(connection, "loop", None)
        if loop is None:
            try:
                loop = _get_running_loop()  # not cached: a fast path may outlive a loop
            except RuntimeError:
                return None  # no loop to answer on: the handler's
        reply = BatchedReply.__new__(BatchedReply)
        reply._fast_path = self
        reply._connection = connection
        reply._loop = loop
        reply._entry = entry  # keeps the version loaded until the answer
        reply.columnar = parsed.columnar
        reply.output_dtypes = signature.output_dtypes
        reply.keep_alive = keep_alive
        reply._model_name = model_name
        reply._ok = ok
        reply._runtime = runtime
        reply._start = start
        reply._run_start = monotonic_ns()
        try:
            task = signature.batcher.schedule(parsed.inputs, None, self._timeout_in_ms, None,
                                              reply)
        except _ServingError as e:
            return self._encode_error(e, keep_alive, model_name)
        if task is None:
            return None  # bypasses the batcher: the handler runs it alone
        if not reply.finished:
            # Only while it can still be cancelled: the reply and its task refer to each other,
            # and an outcome breaks that cycle (see _finish) so neither waits for the GC.
            reply.task = task
        return reply

    cdef bytes _encode_outputs(self, object outputs, bint columnar, object output_dtypes,
                               bint keep_alive, str model_name, OkCounts ok, long long start):
        try:
            response = self._format(outputs, columnar, output_dtypes)
        except _ServingError as e:
            return self._encode_error(e, keep_alive, model_name)
        if type(response) is not bytes:
            response = bytes(response)
        ok.record(start)
        return _encode_ok(self._ok_head, <bytes>response, keep_alive)

    cdef bytes _encode_error(self, object error, bint keep_alive, str model_name):
        self._counts.error(model_name, error.code)
        return encode_response(HttpResponse(to_http_status(error.code),
                                            self._format_error(error.message),
                                            headers=self._cors), keep_alive)

    cdef tuple _route(self, bytes path):
        # The last URL's route is kept: clients repeat the same few URLs.
        if path is None:
            return None
        if self._last_path is not None and path == self._last_path:
            return self._last_route
        found = _predict_model_spec(path)
        self._last_path = path
        self._last_route = found
        self._last_ok = None
        self._last_runtime = None
        return found


cdef class DeferredConnection:
    """Base of a connection that a ``BatchedReply`` answers: ``deferred_done(reply)`` is called
    once, on the connection's loop, when the reply's outcome is in (the compiled protocol is
    one, and overrides it; the twin's protocol has the same method by name)."""

    cpdef deferred_done(self, object reply):
        raise NotImplementedError


cdef class BatchedReply(BatchWaiter):
    """The waiter of one batched fast-path request, and later its response (see the twin).

    The batching session treats it as an asyncio future of its loop (the ``BatchWaiter``
    methods, called in C by the compiled session); its outcome goes to
    ``connection.deferred_done(self)``, which writes ``encode(keep_alive)``.
    """

    cpdef object get_loop(self):
        return self._loop

    cpdef bint done(self) except -1:
        return self.finished

    cpdef set_result(self, object result):
        self._finish(result, None)

    cpdef set_exception(self, object error):
        self._finish(None, error)

    def cancel(self):
        """The client went away: the task is dropped if it has not run, the outcome ignored."""
        self.finished = True
        self._entry = None
        if self.task is not None:
            self.task.cancelled = True
            self.task = None

    cdef _finish(self, object outputs, object error):
        if self.finished:
            return
        self.finished = True
        self._entry = None
        # The task holds this reply as its waiter: dropping the way back frees both by reference
        # counting. A cycle per request made the young GC run every ~190 requests (~7% of the
        # loop's CPU at c32 with batching).
        self.task = None
        self._outputs = outputs
        self._error = error
        connection = self._connection
        try:
            if isinstance(connection, DeferredConnection):  # the same method, called in C
                (<DeferredConnection>connection).deferred_done(self)
            else:
                connection.deferred_done(self)
        except Exception:  # never into the batch's delivery loop: the other replies still go
            _log.exception("HTTP handler failed")

    cpdef bytes encode(self, bint keep_alive):
        """The response: the outputs as the handler formats them, or the batch's ServingError
        as the handler answers it; any other error is raised (the connection answers 500)."""
        error = self._error
        if error is None:
            # The batching session's run, as TF Serving times it: from the enqueue.
            self._runtime.record(self._run_start)
            return self._fast_path._encode_outputs(self._outputs, self.columnar,
                                                   self.output_dtypes, keep_alive,
                                                   self._model_name, self._ok, self._start)
        if isinstance(error, _ServingError):
            return self._fast_path._encode_error(error, keep_alive, self._model_name)
        raise error
