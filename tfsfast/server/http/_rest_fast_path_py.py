"""Pure-Python REST predict fast path: the reference twin of ``_rest_fast_path``.

``RestFastPath.answer`` serves the one request shape that dominates REST traffic, a JSON predict
on a model that runs in microseconds, without the general handler's request/response objects and
per-request lookups. It either returns the complete HTTP response, byte for byte what
``HttpRestApiHandler`` plus ``encode_response`` would have sent, or None, and then the caller
hands the request to the handler unchanged. So every status code and message other than the
common 200 comes from the handler itself.

It composes the handler's predict steps (``tfsfast.server.predict``) and skips the ones it does
not need: the route is ``predict_route.predict_model_spec`` (the handler's parser; the last URL's
answer is kept), the servable is looked up in the handle table instead of through a
ServableHandle, its signatures come from a ``predict_signatures.SignatureCache`` (the handler's
``BundleSignatures``, kept per servable), the JSON codec decodes and encodes, and the run is the
bundle's ``run_inline`` or the signature's batcher.

Taken here (everything else returns None):

* ``POST /v1/models/<name>[/versions/<n>]:predict`` as the handler routes it (no label);
* no ``Content-Encoding`` (gzip is the handler's), ``Content-Type`` absent or
  ``application/json`` (parameters allowed, none mentioning msgpack) and ``Accept`` absent,
  ``*/*`` or ``application/json`` (other body and answer formats are the handler's);
* a model version in the handle table (unknown models are the handler's), a body the JSON codec
  parses (one made with the options' ``codec_limits``, as the handler's), a signature that
  resolves, and then either ``bundle.run_inline`` running it now (None: the run must go to a
  thread, so the handler awaits it), or, when the bundle has a batching session and the caller
  passed a ``connection``, the signature's batcher taking the run (``schedule`` returning None
  means it bypasses the batcher: the handler's).

A POST that is not a ``/v1`` predict goes to ``v2`` (``rest_infer_fast_path``'s
``RestInferFastPath``, set by ``rest_fast_path.for_core``; None: the handler's), which answers
the V2 infers it takes the same way; ``answer`` declines any request with V2's
``Inference-Header-Content-Length`` (binary data is the handler's), which the compiled
protocol's head scanner leaves to httptools for that reason.

A batched request is answered later: ``answer`` returns a :class:`BatchedReply` (the task's
waiter, with an asyncio future's methods as a ``BatchWaiter`` has them) instead of bytes, and when
the batch has run, on the connection's event loop, the reply calls
``connection.deferred_done(reply)`` (``DeferredConnection``'s one method); the connection then
writes ``reply.encode(keep_alive)`` (and, if the connection went away first, calls
``reply.cancel()``, which drops the task before it runs). No coroutine, task or future is made
per request, and the batch wakes the loop once. The reply holds the version's handle-table entry
until it is answered, as the handler holds its ``ServableHandle``, so the version is not unloaded
under a queued request.

Before the run (or the enqueue) nothing has side effects, so any failure up to there returns
None and the handler redoes the request from scratch. Once the model has run (or the request is
queued), it is never run a second time: a ServingError from the run, the enqueue, the batch or
from formatting the outputs is answered here exactly as the handler answers it (its status from
``to_http_status``, the body from the codec's ``format_error``); any other exception propagates,
as it would out of the handler (the protocol answers 500).

The run gets ``timeout_in_ms`` and no deadline: the handler's deadline is taken right before the
same synchronous run (or enqueue, which bounds the task by ``timeout_in_ms`` from now itself), so
it can only narrow TF's timeout by the microseconds in between.

Metrics: every response returned here (or by a ``BatchedReply``) is counted as the handler
counts its own, TF Serving's ``request_count`` once by model and status and, when OK, the
``request_latency`` (API ``predict``, entrypoint ``REST``) from the call of ``answer``, and the
run's ``runtime_latency`` (API ``Predict``, as TF Serving's shared ``RunPredict`` labels it; a
batched run timed from the enqueue, as TF Serving's batching session blocks its caller), in this
instance's ``request_counts.RequestCounts``; a request handed to the handler is the handler's to
count.

Thread-safety: one instance per event loop; the per-model caches are not locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tfsfast.codecs import json_codec
from tfsfast.core.handle_table import LATEST
from tfsfast.monitoring import request_counts
from tfsfast.server.http._http_protocol_py import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.server.predict.predict_route import predict_model_spec
from tfsfast.server.predict.predict_signatures import PredictSignature, SignatureCache
from tfsfast.util.status import ServingError, to_http_status

_log = logging.getLogger("tfsfast.server.http.rest_fast_path")

_ACCEPTED = (b"*/*", b"application/json")
# The header of V2's binary tensor data extension: such a request is the handler's.
_V2_BINARY = b"inference-header-content-length"

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]

# The URL step: (model name, version or None) of a predict URL the fast path takes, else None.
route = predict_model_spec


def plain_json(headers: Mapping[bytes, bytes]) -> bool:
    """Whether the headers ask for nothing but a JSON body in and a JSON answer out."""
    if b"content-encoding" in headers:
        return False
    content_type = headers.get(b"content-type")
    if content_type is not None:
        media = content_type.split(b";", 1)[0].strip(b" \t").lower()
        if media != b"application/json" or b"msgpack" in content_type.lower():
            return False
    accept = headers.get(b"accept")
    return accept is None or accept in _ACCEPTED


class RestFastPath:
    """The predict fast path in front of ``HttpRestApiHandler`` (see the module docstring).

    ``find`` is the manager's handle-table lookup; ``options`` must be the handler's.
    """

    def __init__(self, find: Find, options: RestApiOptions | None = None) -> None:
        self._find = find
        options = options or RestApiOptions()
        self._json = json_codec.JsonCodec(options.codec_limits)
        self._timeout_in_ms = options.timeout_in_ms
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        self._signatures = SignatureCache(options.enforce_signature_method_name)
        # The last URL's route: clients repeat the same few URLs.
        self._last_path: bytes | None = None
        self._last_route: tuple[str, int | None] | None = None
        self._counts = request_counts.RequestCounts("REST")
        # The last route's OK and runtime counts (made with its first answer).
        self._last_ok: Any = None
        self._last_runtime: Any = None
        # The V2 infer fast path, offered the requests that are not a /v1 predict (for_core).
        self.v2: Any = None

    def answer(self, method: str, path: bytes, headers: Mapping[bytes, bytes], body: bytes,
               keep_alive: bool, connection: Any = None) -> bytes | BatchedReply | None:
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``); a
        :class:`BatchedReply` when the run was batched for ``connection`` (see the module
        docstring); or None: hand the request to the handler."""
        if method != "POST" or not plain_json(headers) or _V2_BINARY in headers:
            return None
        start = request_counts.now_ns()
        if path != self._last_path:
            self._last_route = route(path)
            self._last_path = path
            self._last_ok = None
            self._last_runtime = None
        spec = self._last_route
        if spec is None:
            # Not a /v1 predict: V2's infer, if it is one.
            return self.v2.answer(path, body, keep_alive) if self.v2 is not None else None
        entry = self._find(spec[0], spec[1], LATEST)
        if entry is None:
            return None
        servable = self._signatures.of(entry.servable, entry.id)
        if servable.run_inline is None:
            return None  # not a SavedModelBundle: the handler decides what it gets
        try:
            parsed = self._json.parse_predict_request(body, servable)
            signature = servable.get(parsed.signature_name)
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        ok = self._last_ok
        runtime = self._last_runtime
        if ok is None:
            ok = self._last_ok = self._counts.ok_counts(spec[0], "predict")
            runtime = self._last_runtime = self._counts.runtime_counts(spec[0], "Predict")
        if servable.batching is not None:
            if connection is None or signature.batcher is None:
                return None  # not batched: the handler runs it alone
            return self._schedule(signature, entry, parsed, connection, keep_alive, spec[0],
                                  ok, runtime, start)
        run_start = request_counts.now_ns()
        try:
            outputs = servable.run_inline(signature.key, parsed.inputs, None,
                                          self._timeout_in_ms, None)
        except ServingError as e:
            return self.encode_error(e, keep_alive, spec[0])
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        runtime.record(run_start)
        return self.encode_outputs(outputs, parsed.columnar, signature.output_dtypes,
                                   keep_alive, spec[0], ok, start)

    def _schedule(self, signature: PredictSignature, entry: Any, parsed: Any, connection: Any,
                  keep_alive: bool, model_name: str, ok: Any, runtime: Any,
                  start: int) -> bytes | BatchedReply | None:
        # The connection's loop, read once when it was made (asyncio's lookup costs a getpid).
        loop = getattr(connection, "loop", None)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None  # no loop to answer on: the handler's
        reply = BatchedReply(self, connection, loop, entry, parsed.columnar,
                             signature.output_dtypes, keep_alive, model_name, ok, runtime,
                             start)
        batcher = signature.batcher
        assert batcher is not None  # answer schedules batched signatures only
        try:
            task = batcher.schedule(parsed.inputs, None, self._timeout_in_ms, None, reply)
        except ServingError as e:
            return self.encode_error(e, keep_alive, model_name)
        if task is None:
            return None  # bypasses the batcher: the handler runs it alone
        if not reply.finished:
            # Only while it can still be cancelled: the reply and its task refer to each other,
            # and an outcome breaks that cycle (see _finish) so neither waits for the GC.
            reply.task = task
        return reply

    def encode_outputs(self, outputs: dict[str, Any], columnar: bool,
                       output_dtypes: dict[str, Any], keep_alive: bool, model_name: str,
                       ok: Any, start: int) -> bytes:
        """The 200 response for ``outputs``, counted in ``ok`` (a ServingError from formatting
        is answered, and counted for ``model_name``)."""
        try:
            response = HttpResponse(200, self._json.format_predict_response(
                outputs, columnar, output_dtypes), headers=self._cors)
        except ServingError as e:
            return self.encode_error(e, keep_alive, model_name)
        ok.record(start)
        return encode_response(response, keep_alive)

    def encode_error(self, error: ServingError, keep_alive: bool, model_name: str) -> bytes:
        self._counts.error(model_name, error.code)
        return encode_response(self._error(error), keep_alive)

    def _error(self, e: ServingError) -> HttpResponse:
        return HttpResponse(to_http_status(e.code), self._json.format_error(e.message),
                            headers=self._cors)


class BatchedReply:
    """The waiter of one batched fast-path request, and later its response.

    The batching session treats it as an asyncio future of ``loop`` (``get_loop``, ``done``,
    ``set_result``, ``set_exception``; all called on that loop, once per batch). Its outcome goes
    to ``connection.deferred_done(self)``, which writes ``encode(keep_alive)``. ``cancel`` (the
    connection went away) drops the queued task and the outcome.
    """

    __slots__ = ("_connection", "_entry", "_error", "_fast_path", "_loop", "_model_name", "_ok",
                 "_outputs", "_run_start", "_runtime", "_start", "columnar", "finished",
                 "keep_alive", "output_dtypes", "task")

    def __init__(self, fast_path: RestFastPath, connection: Any, loop: Any, entry: Any,
                 columnar: bool, output_dtypes: dict[str, Any], keep_alive: bool,
                 model_name: str, ok: Any, runtime: Any, start: int) -> None:
        self._fast_path = fast_path
        self._connection = connection
        self._loop = loop
        self._entry = entry  # keeps the version loaded until the answer (see module docstring)
        self.columnar = columnar
        self.output_dtypes = output_dtypes
        self.keep_alive = keep_alive
        self._model_name = model_name
        self._ok = ok
        self._runtime = runtime
        self._start = start
        self._run_start = request_counts.now_ns()
        self.finished = False
        self.task: Any = None
        self._outputs: Any = None
        self._error: BaseException | None = None

    def get_loop(self) -> Any:
        return self._loop

    def done(self) -> bool:
        return self.finished

    def set_result(self, outputs: dict[str, Any]) -> None:
        self._finish(outputs, None)

    def set_exception(self, error: BaseException) -> None:
        self._finish(None, error)

    def cancel(self) -> None:
        """The client went away: the task is dropped if it has not run, the outcome ignored."""
        self.finished = True
        self._entry = None
        if self.task is not None:
            self.task.cancelled = True
            self.task = None

    def _finish(self, outputs: Any, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        self._entry = None
        self.task = None  # the task holds this reply as its waiter: no cycle left for the GC
        self._outputs = outputs
        self._error = error
        try:
            self._connection.deferred_done(self)
        except Exception:  # never into the batch's delivery loop: the other replies still go
            _log.exception("HTTP handler failed")

    def encode(self, keep_alive: bool) -> bytes:
        """The response: the outputs as the handler formats them, or the batch's ServingError as
        the handler answers it. Any other error is raised (the connection answers 500, as for an
        exception out of the handler)."""
        error = self._error
        if error is None:
            # The batching session's run, as TF Serving times it: from the enqueue.
            self._runtime.record(self._run_start)
            return self._fast_path.encode_outputs(self._outputs, self.columnar,
                                                  self.output_dtypes, keep_alive,
                                                  self._model_name, self._ok, self._start)
        if isinstance(error, ServingError):
            return self._fast_path.encode_error(error, keep_alive, self._model_name)
        raise error
