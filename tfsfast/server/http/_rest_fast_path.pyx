# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled REST predict fast path; the same contract as ``_rest_fast_path_py`` (its twin).

What differs is only how: the URL and the headers are checked in C without building strings,
the route of the last URL is remembered (a server sees the same few URLs again and again), the
200 response is assembled in one allocation from a prefix built once, and the compiled protocol
calls ``answer`` as a C method. Everything that decides the answer (the codec, the handle table,
the signature checks, ``bundle.run_inline``, the error encoding) is the same code the handler
and the twin call, so both paths answer with the same bytes. Batched requests are answered later
through a ``BatchedReply``, as in the twin.
"""

import asyncio
import logging

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from tfsfast.codecs import json_codec
from tfsfast.servables import predict_util
from tfsfast.server.http.http_protocol import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.util.status import ServingError, to_http_status

from tfsfast.core.handle_table import LATEST as _LATEST_POLICY

cdef object LATEST = _LATEST_POLICY
cdef int _MAX_VERSION_DIGITS = 18  # always below 2**63, so no range check is needed
cdef Py_ssize_t _MAX_MODELS = 64
cdef object _ServingError = ServingError
cdef object _get_running_loop = asyncio.get_running_loop
_log = logging.getLogger("tfsfast.server.http.rest_fast_path")


class _FallBack(Exception):
    """Raised inside the fast path to hand the request to the handler."""


cdef inline bint _is_name_byte(unsigned char c) noexcept:
    return 0x21 <= c <= 0x7E and c != c'/' and c != c':' and c != c'%' and c != c'?' \
        and c != c'#'


cdef inline bint _has_prefix(const unsigned char *s, Py_ssize_t n, const char *p,
                             Py_ssize_t m) noexcept:
    cdef Py_ssize_t i
    if n < m:
        return False
    for i in range(m):
        if s[i] != <unsigned char>p[i]:
            return False
    return True


def route(bytes path):
    """``(model name, version or None)`` for a predict URL the fast path takes, else None."""
    return _parse_route(path)


cdef tuple _parse_route(bytes path):
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
    cdef Py_ssize_t i, start, end, name_end
    cdef long long version = 0
    # "/v1/models/" <name> [ "/versions/" <digits> ] ":predict"
    if not _has_prefix(s, n, b"/v1/models/", 11) or n < 11 + 1 + 8:
        return None
    end = n - 8
    if not _has_prefix(s + end, 8, b":predict", 8):
        return None
    start = 11
    i = start
    while i < end and _is_name_byte(s[i]):
        i += 1
    name_end = i
    if name_end == start:
        return None
    if i == end:
        return (PyBytes_FromStringAndSize(<const char *>s + start, name_end - start)
                .decode("ascii"), None)
    if not _has_prefix(s + i, end - i, b"/versions/", 10):
        return None
    i += 10
    if i == end or end - i > _MAX_VERSION_DIGITS:
        return None
    while i < end:
        if s[i] < c'0' or s[i] > c'9':
            return None
        version = version * 10 + (s[i] - c'0')
        i += 1
    return (PyBytes_FromStringAndSize(<const char *>s + start, name_end - start).decode("ascii"),
            version)


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


cdef class _Model:
    """What the fast path keeps about one bundle; also the codec's ``input_dtypes``."""

    def __cinit__(self, bundle):
        self.bundle = bundle
        # A servable without run_inline is not a SavedModelBundle: the handler decides what it
        # gets. A bundle's batching session takes every batchable run (run_inline declines).
        self.run_inline = getattr(bundle, "run_inline", None)
        self.batching = (getattr(bundle, "batching_session", None)
                         if self.run_inline is not None else None)
        self.inline = self.run_inline is not None and self.batching is None
        self._inputs = {}   # signature name -> {input alias: DataType}
        self._outputs = {}  # signature name as sent -> (Signature, {output alias: DataType})

    def __call__(self, str signature_name):
        dtypes = self._inputs.get(signature_name)
        if dtypes is None:
            signature = self.bundle.signatures.get(signature_name)
            if signature is None or not signature.inputs:
                raise _FallBack  # the handler's message for these
            dtypes = {alias: t.dtype for alias, t in signature.inputs.items()}
            self._inputs[signature_name] = dtypes
        return dtypes

    cdef tuple signature(self, str signature_name, bint enforce):
        """``(signature key, {output alias: DataType}, its batcher or None)``; raises as
        ``get_predict_signature``."""
        found = self._outputs.get(signature_name)
        if found is None:
            signature = predict_util.get_predict_signature(self.bundle, signature_name, enforce)
            found = (signature.key, {alias: t.dtype for alias, t in signature.outputs.items()},
                     None if self.batching is None else self.batching.batcher(signature.key))
            self._outputs[signature_name] = found
        return <tuple>found


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
        self._enforce = options.enforce_signature_method_name
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        # encode_response's bytes up to Content-Length, for a 200 with these headers.
        full = encode_response(HttpResponse(200, b"", headers=self._cors), True)
        self._ok_head = full[:full.index(_CONTENT_LENGTH)]
        self._models = {}
        self._last_path = None
        self._last_route = None

    cpdef object answer(self, str method, bytes path, dict headers, bytes body,
                        bint keep_alive, object connection=None):
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``); a
        ``BatchedReply`` when the run was batched for ``connection``; or None: hand the request
        to the handler."""
        if method != "POST" or not _plain_json(headers):
            return None
        return self.answer_plain(path, body, keep_alive, connection)

    cdef object answer_plain(self, bytes path, bytes body, bint keep_alive, object connection):
        """``answer`` for a POST whose headers the caller found plain (``plain_json``)."""
        cdef tuple spec = self._route(path)
        if spec is None:
            return None
        entry = self._find(spec[0], spec[1], LATEST)
        if entry is None:
            return None
        cdef _Model model = self._model(entry.servable)
        if model is None:
            return None
        cdef tuple found
        try:
            parsed = self._parse(body, model)
            found = model.signature(parsed.signature_name, self._enforce)
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        key, output_dtypes, batcher = found
        if model.batching is not None:
            if connection is None or batcher is None:
                return None  # not batched: the handler runs it alone
            return self._schedule(batcher, entry, parsed, output_dtypes, connection, keep_alive)
        try:
            outputs = model.run_inline(key, parsed.inputs, None, self._timeout_in_ms, None)
        except _ServingError as e:
            return self._encode_error(e, keep_alive)
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        return self._encode_outputs(outputs, parsed.columnar, output_dtypes, keep_alive)

    cdef object _schedule(self, object batcher, object entry, object parsed,
                          object output_dtypes, object connection, bint keep_alive):
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
        reply.output_dtypes = output_dtypes
        reply.keep_alive = keep_alive
        try:
            task = batcher.schedule(parsed.inputs, None, self._timeout_in_ms, None, reply)
        except _ServingError as e:
            return self._encode_error(e, keep_alive)
        if task is None:
            return None  # bypasses the batcher: the handler runs it alone
        if not reply.finished:
            # Only while it can still be cancelled: the reply and its task refer to each other,
            # and an outcome breaks that cycle (see _finish) so neither waits for the GC.
            reply.task = task
        return reply

    cdef bytes _encode_outputs(self, object outputs, bint columnar, object output_dtypes,
                               bint keep_alive):
        try:
            response = self._format(outputs, columnar, output_dtypes)
        except _ServingError as e:
            return self._encode_error(e, keep_alive)
        if type(response) is not bytes:
            response = bytes(response)
        return _encode_ok(self._ok_head, <bytes>response, keep_alive)

    cdef bytes _encode_error(self, object error, bint keep_alive):
        return encode_response(HttpResponse(to_http_status(error.code),
                                            self._format_error(error.message),
                                            headers=self._cors), keep_alive)

    cdef tuple _route(self, bytes path):
        # The last URL's route is kept: clients repeat the same few URLs.
        if path is None:
            return None
        if self._last_path is not None and path == self._last_path:
            return self._last_route
        found = _parse_route(path)
        self._last_path = path
        self._last_route = found
        return found

    cdef _Model _model(self, object bundle):
        # Keyed by id: the cache holds the bundle, so its id is not reused while cached (and a
        # servable need not be hashable).
        cdef object key = id(bundle)
        cdef _Model model = self._models.get(key)
        if model is None or model.bundle is not bundle:
            if len(self._models) >= _MAX_MODELS:
                self._models.clear()
            model = _Model(bundle)
            self._models[key] = model
        return model if model.inline or model.batching is not None else None


cdef class DeferredConnection:
    """Base of a connection that takes a ``BatchedReply``'s outcome through a C call,
    ``deferred_answer(reply)``, instead of its Python ``deferred_done(reply)`` (the compiled
    protocol is one; any other connection is called by name)."""

    cdef int deferred_answer(self, BatchedReply reply) except -1:
        raise NotImplementedError


cdef class BatchedReply:
    """The waiter of one batched fast-path request, and later its response (see the twin).

    The batching session treats it as an asyncio future of its loop; its outcome goes to
    ``connection.deferred_done(self)``, which writes ``encode(keep_alive)``.
    """

    def get_loop(self):
        return self._loop

    def done(self):
        return self.finished

    def set_result(self, outputs):
        self._finish(outputs, None)

    def set_exception(self, error):
        self._finish(None, error)

    # The same, for the compiled batching session (BatchWaiter): C calls, no lookups by name.
    cdef object waiter_loop(self):
        return self._loop

    cdef bint waiter_done(self) except -1:
        return self.finished

    cdef int waiter_resolve(self, object result, object error) except -1:
        self._finish(result, error)
        return 0

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
            if isinstance(connection, DeferredConnection):
                (<DeferredConnection>connection).deferred_answer(self)
            else:
                connection.deferred_done(self)
        except Exception:  # never into the batch's delivery loop: the other replies still go
            _log.exception("HTTP handler failed")

    cpdef bytes encode(self, bint keep_alive):
        """The response: the outputs as the handler formats them, or the batch's ServingError
        as the handler answers it; any other error is raised (the connection answers 500)."""
        error = self._error
        if error is None:
            return self._fast_path._encode_outputs(self._outputs, self.columnar,
                                                   self.output_dtypes, keep_alive)
        if isinstance(error, _ServingError):
            return self._fast_path._encode_error(error, keep_alive)
        raise error
