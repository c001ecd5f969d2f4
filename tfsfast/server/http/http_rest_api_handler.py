"""``HttpRestApiHandler``: TF Serving's REST API (``/v1/models/...``) over a ServerCore.

Routes, status codes and messages follow TF Serving's ``http_rest_api_handler.cc``; see
``tfserving-compat.md`` §1.3. Predict composes the steps of ``tfsfast.server.predict``: the
route (``predict_route``), the servable handle and its signature (``predict_signatures``), the
codec's decode, the run, the codec's encode. Model runs go through ``SavedModelBundle``:
``run_inline`` for signatures measured to run in microseconds (on the loop itself), else
``run_async``, batched when batching is on, otherwise on the bundle's thread pool (the runtime
releases the GIL).

Metrics, where TF Serving's ``http_server.cc`` records them: every request of the API (the
``/v1`` routes, errors and CORS preflights included) counts ``request_count{model_name,
status}`` once, the model name as its URL gave it ("" if none) and the status its code's name;
one answered 200 also records ``request_latency{model_name, API, entrypoint="REST"}`` in µs from
the start of its processing, API ``predict``, ``classify`` or ``regress`` ("" for status and
metadata). Successful runs record ``runtime_latency`` and classify/regress their
``request_example_counts``. With ``RestApiOptions.prometheus_path`` (``--monitoring_config_file``)
that path answers any method with the Prometheus page (``text/plain``), before the API and
uncounted, as TF Serving's separate monitoring handler; without it, the path is unrouted (404).

Beside TF Serving's API, the Open Inference Protocol (KServe V2): its metadata and inference
routes (``GET /v2``, ``GET /v2/models/<name>[/versions/<v>]``, ``POST
/v2/models/<name>[/versions/<v>]/infer``) are ``tfsfast.server.v2.rest``'s, the model
repository extension's (``/v2/repository/...``) ``tfsfast.server.v2.repository_rest``'s, and
its health endpoints, which Kubernetes probes of KServe, Triton and MLServer use, are answered
here from ``ServerHealth``:

- ``GET /v2/health/live``, ``GET /v2/health/ready``,
  ``GET /v2/models/<name>[/versions/<v>]/ready``: 200 for true and 503 for false, both with an
  empty body (the V2 spec: "the HTTP response body should be empty"; tritonclient's
  ``is_server_ready`` and ``is_model_ready`` look at the status only). The spec asks for a 4xx
  for false; 503 is what Kubernetes and load balancers read as "temporarily not serving", and
  KServe's own server answers a model that is not ready with 503 too.
- A model the server does not know (or a version it has not seen) is 404 with the V2 error body
  ``{"error": "<message>"}``, as KServe's and Triton's servers answer.
- Routes are case-sensitive (the V2 spec: "All strings in all contexts are case-sensitive");
  the name is percent-decoded. Other methods get what ``/v1`` paths get: OPTIONS the CORS
  preflight, anything else 400 ``Malformed request: <method> <path>``. Every ``/v2`` path that
  is none of the protocol's routes is the plain 404 of an unrouted path.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.protobuf import json_format

from tfsfast.codecs import examples_codec, json_codec, msgpack_codec
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.monitoring import serving_metrics
from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.prometheus_exporter import generate_page
from tfsfast.servables import classifier, regressor
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.serialized_input import input_to_serialized_example_tensor
from tfsfast.server.get_model_status_impl import get_model_status
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.predict.predict_route import (
    INT64_MAX,
    PredictRoute,
    model_spec,
    parse_predict_route,
    request_path,
)
from tfsfast.server.predict.predict_signatures import PredictSignature, SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2.model_repository import ModelRepository
from tfsfast.server.v2.remote_model_repository import RemoteModelRepository
from tfsfast.server.v2.repository_rest import RepositoryRestApi
from tfsfast.server.v2.rest import V2RestApi
from tfsfast.util.status import Code, ServingError, to_http_status

_log = logging.getLogger(__name__)

# TF Serving's status and metadata route (an RE2 full match, case-insensitive); predict,
# classify and regress are routed by ``predict_route``.
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_V1_RE = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
# The V2 routes (case-sensitive, as the V2 spec wants every string): the health routes here,
# the others V2RestApi's.
_V2_ROOT = "/v2"
_V2_PREFIX = "/v2/"
_V2_SERVER_HEALTH_RE = re.compile(r"/v2/health/(live|ready)")
_V2_MODEL_READY_RE = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?/ready")

_NOT_FOUND_HTML = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>"
                   b"\nThe requested URL was not found on this server.</BODY></HTML>\n")
# The headers TF Serving adds with --enable_cors_support (the fast path sends the same).
CORS_HEADERS = [(b"Access-Control-Allow-Origin", b"*"),
                 (b"Access-Control-Allow-Methods", b"POST, GET"),
                 (b"Access-Control-Allow-Headers", b"Content-Type")]
_ORIGIN_RE = re.compile(rb"https?://")
_MSGPACK = msgpack_codec.CONTENT_TYPE.encode()
# request_count and request_latency of the REST API (the fast path records through its own).
_RECORDER = serving_metrics.RequestRecorder("REST")


class PayloadTooLarge(ServingError):
    """A request body over ``--rest_api_max_body_bytes`` once inflated: 413, as the connection
    answers a body over the limit as sent (gRPC's code for it is RESOURCE_EXHAUSTED)."""

    HTTP_STATUS = 413

    def __init__(self, message: str) -> None:
        super().__init__(Code.RESOURCE_EXHAUSTED, message)


@dataclass
class RestApiOptions:
    timeout_in_ms: int = 30_000
    enable_cors_support: bool = False
    enforce_signature_method_name: bool = False
    max_decompressed_body_bytes: int = 64 << 20
    # What one request body may make the codecs build (JSON and msgpack, predict, classify and
    # regress alike).
    codec_limits: CodecLimits = DEFAULT_CODEC_LIMITS
    # Where the Prometheus page is served (``--monitoring_config_file``); None: nowhere.
    prometheus_path: str | None = None


class HttpRestApiHandler:
    """Turns ``HttpRequest`` into ``HttpResponse``; never raises. Thread-compatible (loop only)."""

    def __init__(self, core: ServerCore, options: RestApiOptions | None = None,
                 health: ServerHealth | None = None,
                 repository: ModelRepository | RemoteModelRepository | None = None) -> None:
        """``health`` answers the V2 health routes; by default one over ``core`` alone (never
        draining), for a handler outside a ``Server``. ``repository`` answers the model
        repository routes; by default one over ``core`` without a repository directory."""
        self._core = core
        self._options = options or RestApiOptions()
        self._cors = CORS_HEADERS if self._options.enable_cors_support else None
        self._health = health if health is not None else ServerHealth(core)
        self._prometheus_path = self._options.prometheus_path
        # The codecs, made once with the options' limits (a RestFastPath given the same options
        # makes its JSON codec with them too).
        limits = self._options.codec_limits
        self._json = json_codec.JsonCodec(limits)
        self._msgpack = msgpack_codec.MsgpackCodec(limits)
        # Predict's signatures, resolved once per servable (the fast path keeps its own).
        self._signatures = SignatureCache(self._options.enforce_signature_method_name)
        self._v2 = V2RestApi(core, self._signatures, self._options.timeout_in_ms, limits,
                             self._cors, self._decompressed_body, self._error, self._preflight)
        self._v2_repository = RepositoryRestApi(
            repository if repository is not None else ModelRepository(core), self._cors,
            self._decompressed_body, self._error, self._preflight)

    # --- dispatch ----------------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        path = request_path(request.path)
        if path == self._prometheus_path:
            # Before the API: the page is not a request of it, and is not counted.
            return HttpResponse(200, generate_page(DEFAULT).encode(), content_type=b"text/plain")
        if not _V1_RE.fullmatch(path):
            # Routed after /v1 so that TF Serving's API pays nothing for it.
            if path.startswith(_V2_PREFIX) or path == _V2_ROOT:
                response: HttpResponse | Awaitable[HttpResponse] | None = self._v2_health(
                    request, path)
                if response is None:
                    response = self._v2_repository(request, path)
                if response is None:
                    response = self._v2(request, path)
                if response is not None:
                    return response
            return HttpResponse(404, _NOT_FOUND_HTML, content_type=b"text/html")
        # TF Serving's ProcessRequest: every request of the API is counted once, by the model
        # name its URL gave ("" if none) and its status; an OK one's latency is recorded too,
        # labelled with the method ("" for status and metadata).
        start = _RECORDER.start()
        msgpack_in, msgpack_out = _wire_formats(request.headers)
        name = api = ""
        try:
            if request.method == "OPTIONS":
                response = self._preflight(request)
                if response.status != 200:
                    _RECORDER.error(name, Code.INVALID_ARGUMENT)
                    return response
                _RECORDER.ok(name, api, start)
                return response
            answer: HttpResponse | Awaitable[HttpResponse] | None = None
            if request.method == "POST":
                route = parse_predict_route(path)
                if route is not None and route[3] == "predict":
                    name, api = route[0], "predict"
                    answer = self._predict(request, route, msgpack_in, msgpack_out)
                elif route is not None and route[3] in ("classify", "regress"):
                    name, api = route[0], route[3]
                    answer = self._classify_or_regress(request, route, msgpack_in,
                                                       msgpack_out)
            elif request.method == "GET":
                match = _STATUS_RE.fullmatch(path)
                if match is not None:
                    if match.group(1) is not None:
                        name = unquote(match.group(1), errors="replace")
                    answer = self._get(match)
            if answer is None:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Malformed request: {request.method} {path}")
        except ServingError as e:
            _RECORDER.error(name, e.code)
            return self._error(e, msgpack_out)
        if isinstance(answer, HttpResponse):
            _RECORDER.ok(name, api, start)
            return answer
        return self._recorded(answer, name, api, start, msgpack_out)

    async def _recorded(self, answer: Awaitable[HttpResponse], name: str, api: str, start: int,
                        msgpack_out: bool) -> HttpResponse:
        """``answer``, awaited, counted as ``__call__`` counts the answers it has at once."""
        try:
            response = await answer
        except ServingError as e:
            _RECORDER.error(name, e.code)
            return self._error(e, msgpack_out)
        _RECORDER.ok(name, api, start)
        return response

    def _error(self, e: ServingError, msgpack_out: bool = False) -> HttpResponse:
        status = (PayloadTooLarge.HTTP_STATUS if isinstance(e, PayloadTooLarge)
                  else to_http_status(e.code))
        return self._error_status(status, e.message, msgpack_out)

    def _error_status(self, status: int, message: str, msgpack_out: bool) -> HttpResponse:
        if msgpack_out:
            return HttpResponse(status, self._msgpack.format_error(message), headers=self._cors,
                                content_type=_MSGPACK)
        return HttpResponse(status, self._json.format_error(message), headers=self._cors)

    def error_response(self, status: int, message: str,
                       headers: Mapping[bytes, bytes] | None) -> HttpResponse:
        """An error the connection answers itself (a body over the limit, a malformed or
        stalled request, a failure of this handler), in the format the request's ``headers``
        ask for and with the CORS headers, as this handler answers its own errors; JSON when
        the headers are not known. The ``HttpProtocol``'s ``error_response``."""
        return self._error_status(status, message,
                                  headers is not None and _wire_formats(headers)[1])

    def _ok(self, body: bytes, msgpack_out: bool = False) -> HttpResponse:
        if msgpack_out:
            return HttpResponse(200, body, headers=self._cors, content_type=_MSGPACK)
        return HttpResponse(200, body, headers=self._cors)

    def _preflight(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get(b"origin", b"")
        status = 200 if _ORIGIN_RE.search(origin) else 400
        return HttpResponse(status, b"", headers=self._cors, content_type=None)

    # --- V2 health -------------------------------------------------------------------------

    def _v2_health(self, request: HttpRequest, path: str) -> HttpResponse | None:
        """The answer to a V2 health route, or None when ``path`` is not one."""
        server = _V2_SERVER_HEALTH_RE.fullmatch(path)
        model = None if server is not None else _V2_MODEL_READY_RE.fullmatch(path)
        if server is None and model is None:
            return None
        try:
            if request.method == "OPTIONS":
                return self._preflight(request)
            if request.method != "GET":
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Malformed request: {request.method} {path}")
            if server is not None:
                ok = (self._health.is_server_live() if server.group(1) == "live"
                      else self._health.is_server_ready())
            else:
                assert model is not None
                name = unquote(model.group(1), errors="replace")
                version = None
                if model.group(2) is not None:
                    version = int(model.group(2))
                    if version > INT64_MAX:
                        raise ServingError(
                            Code.INVALID_ARGUMENT,
                            f"Failed to convert version: {model.group(2)} to numeric.")
                ok = self._health.is_model_ready(name, version)
        except ServingError as e:
            return self._error(e)
        return HttpResponse(200 if ok else 503, b"", headers=self._cors, content_type=None)

    # --- GET: status and metadata ---------------------------------------------------------

    def _get(self, match: re.Match) -> HttpResponse:
        if match.group(1) is None:
            raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
        name, version, label = model_spec(match.group(1), match.group(2), match.group(3))
        if match.group(4) is not None:
            return self._ok(self._metadata(name, version, label))
        # A label is ignored for status (TF Serving looks at the version only).
        response = get_model_status(self._core.servable_state_monitor, name, version)
        return self._ok(json_format.MessageToJson(
            response, indent=1, always_print_fields_with_no_presence=True).encode())

    def _metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        with self._core.get_servable_handle(name, version, label) as handle:
            bundle: SavedModelBundle = handle.servable
            spec = {"name": name, "signature_name": "", "version": str(handle.id.version)}
            signature_map = _signature_def_map(bundle)
        body = {"model_spec": spec, "metadata": {"signature_def": signature_map}}
        return json.dumps(body, indent=4).encode()

    # --- POST: predict ------------------------------------------------------------------------

    def _decompressed_body(self, request: HttpRequest) -> bytes:
        """The body, inflated when ``Content-Encoding`` names gzip: every member of the stream
        (RFC 1952 allows several), never more than the limit (PayloadTooLarge, 413), and only a
        complete stream (a truncated one is INVALID_ARGUMENT, not a shorter body; bytes after
        the last member that are not another are INVALID_ARGUMENT too)."""
        encoding = request.headers.get(b"content-encoding", b"").lower()
        if b"gzip" not in encoding:
            return request.body
        limit = self._options.max_decompressed_body_bytes
        parts: list[bytes] = []
        size = 0
        data = request.body
        try:
            while True:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(data, limit + 1 - size)
                size += len(out)
                if size > limit or d.unconsumed_tail:
                    raise PayloadTooLarge(
                        f"Decompressed request body exceeds the maximum of {limit} bytes "
                        f"(flag --rest_api_max_body_bytes)")
                parts.append(out)
                if not d.eof:
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       "Failed to decompress gzip body: the gzip stream is "
                                       f"truncated ({len(request.body)} bytes)")
                data = d.unused_data
                if not data.strip(b"\0"):  # the end, or the zero padding gzip allows after it
                    break
        except (zlib.error, gzip.BadGzipFile) as e:
            raise ServingError(Code.INVALID_ARGUMENT, f"Failed to decompress gzip body: {e}") \
                from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _predict(self, request: HttpRequest, route: PredictRoute, msgpack_in: bool,
                 msgpack_out: bool) -> HttpResponse | Awaitable[HttpResponse]:
        name, version, label, _ = route
        body = self._decompressed_body(request)
        handle = self._core.get_servable_handle(name, version, label)
        try:
            bundle: SavedModelBundle = handle.servable
            signatures = self._signatures.of(bundle, handle.id)
            codec = self._msgpack if msgpack_in else self._json
            parsed = codec.parse_predict_request(body, signatures)
            signature = signatures.get(parsed.signature_name)
            timeout_in_ms = self._options.timeout_in_ms
            deadline = time.monotonic() + timeout_in_ms / 1e3 if timeout_in_ms > 0 else None
            # Microsecond models answer right here: no task, no future, no loop round trip.
            run_start = time.monotonic_ns()
            outputs = bundle.run_inline(signature.key, parsed.inputs, None, timeout_in_ms,
                                        deadline)
        except BaseException:
            handle.release()
            raise
        if outputs is not None:
            _record_runtime(name, "Predict", run_start)
            handle.release()
            return self._predict_response(signature, parsed.columnar, outputs, msgpack_out)
        return self._run_predict(handle, bundle, signature, parsed, timeout_in_ms, deadline,
                                 msgpack_out)

    async def _run_predict(self, handle: Any, bundle: SavedModelBundle,
                           signature: PredictSignature, parsed: Any, timeout_in_ms: int,
                           deadline: float | None, msgpack_out: bool) -> HttpResponse:
        with handle:
            run_start = time.monotonic_ns()
            outputs = await bundle.run_async(signature.key, parsed.inputs, None,
                                             timeout_in_ms, deadline)
            _record_runtime(handle.id.name, "Predict", run_start)
        return self._predict_response(signature, parsed.columnar, outputs, msgpack_out)

    def _predict_response(self, signature: PredictSignature, columnar: bool,
                          outputs: dict[str, Any], msgpack_out: bool) -> HttpResponse:
        codec = self._msgpack if msgpack_out else self._json
        return self._ok(codec.format_predict_response(outputs, columnar, signature.output_dtypes),
                        msgpack_out)

    # --- POST: classify and regress ----------------------------------------------------

    def _classify_or_regress(self, request: HttpRequest, route: PredictRoute, msgpack_in: bool,
                             msgpack_out: bool) -> Awaitable[HttpResponse]:
        name, version, label, method = route
        parse = (examples_codec.parse_classify_regress_msgpack if msgpack_in
                 else examples_codec.parse_classify_regress_request)
        signature_name, request_input = parse(self._decompressed_body(request),
                                              self._options.codec_limits)
        handle = self._core.get_servable_handle(name, version, label)
        return self._run_classify_or_regress(handle, method, signature_name,
                                             request_input, msgpack_out)

    async def _run_classify_or_regress(self, handle: Any, method: str, signature_name: str,
                                       request_input: Any, msgpack_out: bool) -> HttpResponse:
        """One run of a classify/regress signature on the examples (TF Serving's structure
        checks and results), awaited like predict so the loop keeps serving."""
        enforce = self._options.enforce_signature_method_name
        timeout_in_ms = self._options.timeout_in_ms
        deadline = time.monotonic() + timeout_in_ms / 1e3 if timeout_in_ms > 0 else None
        classify = method == "classify"
        with handle:
            bundle: SavedModelBundle = handle.servable
            if classify:
                signature = classifier.get_classification_signature(
                    bundle, signature_name, enforce)
                alias, outputs = classifier.pre_process_classification(signature, enforce)
            else:
                signature = regressor.get_regression_signature(bundle, signature_name,
                                                               enforce)
                alias, outputs = regressor.pre_process_regression(signature, enforce)
            examples = input_to_serialized_example_tensor(request_input)
            run_start = time.monotonic_ns()
            values = await bundle.run_async(signature.key, {alias: examples}, outputs,
                                            timeout_in_ms, deadline)
            _record_runtime(handle.id.name, "Classify" if classify else "Regress", run_start)
            # TF Serving's RecordRequestExampleCount, after a successful run.
            serving_metrics.record_request_example_count(handle.id.name, len(examples))
        if classify:
            result = classifier.post_process_classification_result(
                signature, len(examples), values)
            body = (examples_codec.format_classification_result_msgpack(result)
                    if msgpack_out else examples_codec.format_classification_result(result))
        else:
            result = regressor.post_process_regression_result(signature, len(examples),
                                                              values)
            body = (examples_codec.format_regression_result_msgpack(result) if msgpack_out
                    else examples_codec.format_regression_result(result))
        return self._ok(body, msgpack_out)


def _record_runtime(model_name: str, api: str, start: int) -> None:
    """TF Serving's RecordRuntimeLatency of a successful run begun at ``start``
    (``time.monotonic_ns``); ``api`` is the run's (``Predict``, as TF Serving's shared
    ``RunPredict`` labels REST's predict too)."""
    serving_metrics.record_runtime_latency(model_name, api, "TF1",
                                           (time.monotonic_ns() - start) // 1000)


def _wire_formats(headers: Mapping[bytes, bytes]) -> tuple[bool, bool]:
    """(msgpack request body, msgpack response body) from ``Content-Type`` and ``Accept``.

    The body is msgpack when its Content-Type says so; the response follows ``Accept`` when it
    names JSON or msgpack, and otherwise answers in the request's format. TF Serving ignores the
    Content-Type, so plain JSON clients see no difference.
    """
    content_type = headers.get(b"content-type")
    msgpack_in = content_type is not None and b"msgpack" in content_type
    accept = headers.get(b"accept")
    if accept is not None and b"msgpack" in accept:
        return msgpack_in, True
    if accept is not None and b"json" in accept:
        return msgpack_in, False
    return msgpack_in, msgpack_in


def _signature_def_map(bundle: SavedModelBundle) -> dict[str, Any]:
    """The bundle's SignatureDefMap as TF Serving writes it (proto field names, int64 text)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in bundle.meta_graph_def.signature_def.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    return json_format.MessageToDict(signature_map, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
