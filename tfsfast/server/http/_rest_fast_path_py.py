"""Pure-Python REST predict fast path: the reference twin of ``_rest_fast_path``.

``RestFastPath.answer`` serves the one request shape that dominates REST traffic, a JSON predict
on a model that runs in microseconds, without the general handler's routing, request/response
objects and per-request lookups. It either returns the complete HTTP response, byte for byte what
``HttpRestApiHandler`` plus ``encode_response`` would have sent, or None, and then the caller
hands the request to the handler unchanged. So every status code and message other than the
common 200 comes from the handler itself.

Taken here (everything else returns None):

* ``POST /v1/models/<name>[/versions/<n>]:predict``, lower-case as written, no query string, a
  name of printable ASCII without ``%`` (so percent-decoding is the identity), at most 18
  version digits;
* no ``Content-Encoding`` (gzip is the handler's), ``Content-Type`` absent or
  ``application/json`` (parameters allowed, none mentioning msgpack) and ``Accept`` absent,
  ``*/*`` or ``application/json`` (other body and answer formats are the handler's);
* a model version in the handle table (labels and unknown models are the handler's), a body the
  JSON codec parses (one made with the options' ``codec_limits``, as the handler's), a signature
  that resolves, and then either ``bundle.run_inline`` running it
  now (None: the run must go to a thread, so the handler awaits it), or, when the bundle has a
  batching session and the caller passed a ``connection``, the batching session taking the run
  (``schedule`` returning None means it bypasses the batcher: the handler's).

A batched request is answered later: ``answer`` returns a :class:`BatchedReply` (the task's
waiter) instead of bytes, and when the batch has run, on the connection's event loop, the reply
calls ``connection.deferred_done(reply)``; the connection then writes ``reply.encode(keep_alive)``
(and, if the connection went away first, calls ``reply.cancel()``, which drops the task before it
runs). No coroutine, task or future is made per request, and the batch wakes the loop once. The
reply holds the version's handle-table entry until it is answered, as the handler holds its
``ServableHandle``, so the version is not unloaded under a queued request.

Before the run (or the enqueue) nothing has side effects, so any failure up to there returns
None and the handler redoes the request from scratch. Once the model has run (or the request is
queued), it is never run a second time: a ServingError from the run, the enqueue, the batch or
from formatting the outputs is answered here exactly as the handler answers it (its status from
``to_http_status``, the body from the codec's ``format_error``); any other exception propagates,
as it would out of the handler (the protocol answers 500).

The run gets ``timeout_in_ms`` and no deadline: the handler's deadline is taken right before the
same synchronous run (or enqueue, which bounds the task by ``timeout_in_ms`` from now itself), so
it can only narrow TF's timeout by the microseconds in between.

Thread-safety: one instance per event loop; the per-model caches are not locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tfsfast.codecs import json_codec
from tfsfast.core.handle_table import LATEST
from tfsfast.servables import predict_util
from tfsfast.server.http.http_protocol import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.util.status import ServingError, to_http_status

_log = logging.getLogger("tfsfast.server.http.rest_fast_path")

_PREFIX = b"/v1/models/"
_VERSIONS = b"/versions/"
_PREDICT = b":predict"
_MAX_VERSION_DIGITS = 18  # always below 2**63, so no range check is needed
_ACCEPTED = (b"*/*", b"application/json")
# Bounds the per-model cache; a server with more models than this re-caches in turn.
_MAX_MODELS = 64

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]


class _FallBack(Exception):
    """Raised inside the fast path to hand the request to the handler."""


def route(path: bytes) -> tuple[str, int | None] | None:
    """``(model name, version or None)`` for a predict URL the fast path takes, else None."""
    if not path.startswith(_PREFIX) or not path.endswith(_PREDICT):
        return None
    spec = path[len(_PREFIX):len(path) - len(_PREDICT)]
    name, sep, version = spec.partition(b"/")
    if not name or any(c < 0x21 or c > 0x7E or c in b"/:%?#" for c in name):
        return None
    if not sep:
        return name.decode("ascii"), None
    if (not version.startswith(b"versions/") or not 0 < len(version) - 9 <= _MAX_VERSION_DIGITS
            or any(c < 0x30 or c > 0x39 for c in version[9:])):
        return None
    return name.decode("ascii"), int(version[9:])


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


class _Model:
    """What the fast path keeps about one bundle: signatures resolved, dtype maps built."""

    __slots__ = ("batching", "bundle", "inline", "input_dtypes", "inputs", "outputs")

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        # A servable without run_inline is not a SavedModelBundle: the handler decides what it
        # gets. A bundle's batching session takes every batchable run (run_inline declines).
        saved_model = hasattr(bundle, "run_inline")
        self.batching = getattr(bundle, "batching_session", None) if saved_model else None
        self.inline = saved_model and self.batching is None
        # signature name -> {input alias: DataType}
        self.inputs: dict[str, dict[str, Any]] = {}
        # signature name as sent -> (signature key, {output alias: DataType})
        self.outputs: dict[str, tuple[str, dict[str, Any], Any]] = {}
        self.input_dtypes = self._input_dtypes

    def _input_dtypes(self, signature_name: str) -> dict[str, Any]:
        dtypes = self.inputs.get(signature_name)
        if dtypes is None:
            signature = self.bundle.signatures.get(signature_name)
            if signature is None or not signature.inputs:
                raise _FallBack  # the handler's message for these
            dtypes = {alias: t.dtype for alias, t in signature.inputs.items()}
            self.inputs[signature_name] = dtypes
        return dtypes

    def signature(self, signature_name: str,
                  enforce: bool) -> tuple[str, dict[str, Any], Any]:
        """``(signature key, {output alias: DataType}, its batcher or None)``; raises as
        ``get_predict_signature``."""
        found = self.outputs.get(signature_name)
        if found is None:
            signature = predict_util.get_predict_signature(self.bundle, signature_name, enforce)
            found = (signature.key, {alias: t.dtype for alias, t in signature.outputs.items()},
                     None if self.batching is None else self.batching.batcher(signature.key))
            self.outputs[signature_name] = found
        return found


class RestFastPath:
    """The predict fast path in front of ``HttpRestApiHandler`` (see the module docstring).

    ``find`` is the manager's handle-table lookup; ``options`` must be the handler's.
    """

    def __init__(self, find: Find, options: RestApiOptions | None = None) -> None:
        self._find = find
        options = options or RestApiOptions()
        self._json = json_codec.JsonCodec(options.codec_limits)
        self._timeout_in_ms = options.timeout_in_ms
        self._enforce = options.enforce_signature_method_name
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        self._models: dict[int, _Model] = {}

    def answer(self, method: str, path: bytes, headers: Mapping[bytes, bytes], body: bytes,
               keep_alive: bool, connection: Any = None) -> bytes | BatchedReply | None:
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``); a
        :class:`BatchedReply` when the run was batched for ``connection`` (see the module
        docstring); or None: hand the request to the handler."""
        if method != "POST" or not plain_json(headers):
            return None
        spec = route(path)
        if spec is None:
            return None
        entry = self._find(spec[0], spec[1], LATEST)
        if entry is None:
            return None
        model = self._model(entry.servable)
        if model is None:
            return None
        try:
            parsed = self._json.parse_predict_request(body, model.input_dtypes)
            key, output_dtypes, batcher = model.signature(parsed.signature_name,
                                                          self._enforce)
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        if model.batching is not None:
            if connection is None or batcher is None:
                return None  # not batched: the handler runs it alone
            return self._schedule(batcher, entry, parsed, output_dtypes, connection, keep_alive)
        try:
            outputs = model.bundle.run_inline(key, parsed.inputs, None, self._timeout_in_ms,
                                              None)
        except ServingError as e:
            return self.encode_error(e, keep_alive)
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        return self.encode_outputs(outputs, parsed.columnar, output_dtypes, keep_alive)

    def _schedule(self, batcher: Any, entry: Any, parsed: Any, output_dtypes: dict[str, Any],
                  connection: Any, keep_alive: bool) -> bytes | BatchedReply | None:
        # The connection's loop, read once when it was made (asyncio's lookup costs a getpid).
        loop = getattr(connection, "loop", None)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None  # no loop to answer on: the handler's
        reply = BatchedReply(self, connection, loop, entry, parsed.columnar, output_dtypes,
                             keep_alive)
        try:
            task = batcher.schedule(parsed.inputs, None, self._timeout_in_ms, None, reply)
        except ServingError as e:
            return self.encode_error(e, keep_alive)
        if task is None:
            return None  # bypasses the batcher: the handler runs it alone
        if not reply.finished:
            # Only while it can still be cancelled: the reply and its task refer to each other,
            # and an outcome breaks that cycle (see _finish) so neither waits for the GC.
            reply.task = task
        return reply

    def encode_outputs(self, outputs: dict[str, Any], columnar: bool,
                       output_dtypes: dict[str, Any], keep_alive: bool) -> bytes:
        """The 200 response for ``outputs`` (a ServingError from formatting is answered)."""
        try:
            response = HttpResponse(200, self._json.format_predict_response(
                outputs, columnar, output_dtypes), headers=self._cors)
        except ServingError as e:
            response = self._error(e)
        return encode_response(response, keep_alive)

    def encode_error(self, error: ServingError, keep_alive: bool) -> bytes:
        return encode_response(self._error(error), keep_alive)

    def _error(self, e: ServingError) -> HttpResponse:
        return HttpResponse(to_http_status(e.code), self._json.format_error(e.message),
                            headers=self._cors)

    def _model(self, bundle: Any) -> _Model | None:
        """The cache for ``bundle``; None for a servable the fast path does not run.

        Keyed by ``id``: the cache holds the bundle, so its id is not reused while cached (and a
        servable need not be hashable)."""
        model = self._models.get(id(bundle))
        if model is None or model.bundle is not bundle:
            if len(self._models) >= _MAX_MODELS:
                self._models.clear()
            model = _Model(bundle)
            self._models[id(bundle)] = model
        return model if model.inline or model.batching is not None else None


class BatchedReply:
    """The waiter of one batched fast-path request, and later its response.

    The batching session treats it as an asyncio future of ``loop`` (``get_loop``, ``done``,
    ``set_result``, ``set_exception``; all called on that loop, once per batch). Its outcome goes
    to ``connection.deferred_done(self)``, which writes ``encode(keep_alive)``. ``cancel`` (the
    connection went away) drops the queued task and the outcome.
    """

    __slots__ = ("_connection", "_entry", "_error", "_fast_path", "_loop", "_outputs",
                 "columnar", "finished", "keep_alive", "output_dtypes", "task")

    def __init__(self, fast_path: RestFastPath, connection: Any, loop: Any, entry: Any,
                 columnar: bool, output_dtypes: dict[str, Any], keep_alive: bool) -> None:
        self._fast_path = fast_path
        self._connection = connection
        self._loop = loop
        self._entry = entry  # keeps the version loaded until the answer (see module docstring)
        self.columnar = columnar
        self.output_dtypes = output_dtypes
        self.keep_alive = keep_alive
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
            return self._fast_path.encode_outputs(self._outputs, self.columnar,
                                                  self.output_dtypes, keep_alive)
        if isinstance(error, ServingError):
            return self._fast_path.encode_error(error, keep_alive)
        raise error
