"""``V2RestApi``: the Open Inference Protocol's REST routes, beside TF Serving's ``/v1``.

Served on the REST port by ``HttpRestApiHandler``, which tries these routes only for a path
that ``/v1`` did not match (after the V2 health routes, which it answers itself):

- ``GET /v2``: server metadata (``model_metadata.server_metadata``).
- ``GET /v2/models/<name>[/versions/<v>]``: model metadata of the servable's ``serving_default``
  signature (``model_metadata.model_metadata``).
- ``GET /v2/models/<name>[/versions/<v>]/config``: Triton's model configuration of it
  (``model_config.config_json``).
- ``POST /v2/models/<name>[/versions/<v>]/infer``: inference (``infer``, ``rest_codec``).

Names are percent-decoded and matched case-sensitively (the protocol's rule for every string);
versions resolve through the handle table as on ``/v1``: a version asked for, else the latest
AVAILABLE one (the ``model_version`` of the answer says which ran). Another method on these
paths is 400 ``Malformed request: <method> <path>``, OPTIONS the CORS preflight, as on ``/v1``;
a query string is ignored. Errors are the protocol's ``{"error": "<message>"}`` with the status
TF Serving's mapping gives the code (``to_http_status``; a body over the inflated limit 413).

Inference composes predict's steps (``tfsfast.server.predict``) as the ``/v1`` handler does: the
body inflated as its (gzip), the servable handle held for the request, the signature resolved
through the handler's ``SignatureCache`` (``BundleSignatures.get``: TF Serving's errors for an
unknown signature), the inputs bound to it (``infer.bind_inputs``), then
``SavedModelBundle.run_inline`` (microsecond signatures, on the loop) or an awaited
``run_async`` under the REST timeout (``--rest_api_timeout_in_ms``), which, when the model
batches, enqueues the run on the signature's batcher: V2 and ``/v1`` requests share the batches.
A batched run computes every output and the answer keeps those asked for, since a run with an
output subset would bypass the batcher (TF Serving's rule); an unbatched run computes only those.

Metrics, as ``/v1`` records them (TF Serving has no V2, so the labels are the protocol's
names): every request of these routes (errors and malformed ones included; not the CORS
preflight, and not the health routes, which probes call) counts ``request_count{model_name,
status}`` once; an OK one records ``request_latency{model_name, API, entrypoint="REST"}`` with
API ``infer`` for inference (the route's verb, as ``/v1`` labels ``predict``) and "" for
metadata and configuration; a successful run records ``runtime_latency`` with API
``ModelInfer`` (the protocol's RPC, as ``/v1``'s runs carry gRPC's ``Predict``).

Thread-compatible: called on the REST loop only, as the handler.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from tfsfast.codecs import json_codec
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.monitoring import serving_metrics
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.predict.predict_route import model_spec
from tfsfast.server.predict.predict_signatures import PredictSignature, SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.v2 import infer, model_config, model_metadata, rest_codec
from tfsfast.util.status import Code, ServingError

__all__ = ["INFER_API", "RUNTIME_API", "V2RestApi"]

# The routes (full matches, case-sensitive): the server, and a model's metadata, configuration
# or inference.
_SERVER_PATH = "/v2"
_MODEL_RE = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?(/infer|/config)?")
# The metric labels (see the module docstring).
INFER_API = "infer"
RUNTIME_API = "ModelInfer"
_RECORDER = serving_metrics.RequestRecorder("REST")
_BINARY = b"application/octet-stream"
_HEADER_LENGTH = rest_codec.HEADER_LENGTH.encode()


class V2RestApi:
    """The V2 routes over ``core`` (see the module docstring).

    What it shares with the REST handler it serves beside: the predict ``signatures`` cache,
    the run's ``timeout_in_ms``, the codec ``limits``, the CORS ``cors_headers`` (None: none),
    and three of its steps: ``decompressed_body(request)`` (the body, inflated), ``error(e)``
    (the response to a ServingError) and ``preflight(request)`` (the CORS preflight answer).
    """

    def __init__(self, core: ServerCore, signatures: SignatureCache, timeout_in_ms: int,
                 limits: CodecLimits, cors_headers: list[tuple[bytes, bytes]] | None,
                 decompressed_body: Callable[[HttpRequest], bytes],
                 error: Callable[[ServingError], HttpResponse],
                 preflight: Callable[[HttpRequest], HttpResponse]) -> None:
        self._core = core
        self._signatures = signatures
        self._timeout_in_ms = timeout_in_ms
        self._limits = limits
        self._cors = cors_headers
        self._decompressed_body = decompressed_body
        self._error = error
        self._preflight = preflight

    def __call__(self, request: HttpRequest,
                 path: str) -> HttpResponse | Awaitable[HttpResponse] | None:
        """The answer to ``request`` at ``path`` (its ``request_path``), or None when ``path`` is
        not a route of this API."""
        match = None
        if path != _SERVER_PATH:
            match = _MODEL_RE.fullmatch(path)
            if match is None:
                return None
        if request.method == "OPTIONS":
            return self._preflight(request)
        start = _RECORDER.start()
        name = api = ""
        try:
            if match is None:
                self._expect(request, "GET", path)
                answer: HttpResponse | Awaitable[HttpResponse] = self._ok(
                    json.dumps(model_metadata.server_metadata()).encode())
            else:
                # The name first: a request with a bad version still counts for its model.
                name = unquote(match.group(1), errors="replace")
                version = model_spec(match.group(1), match.group(2), None)[1]
                if match.group(3) is None:
                    self._expect(request, "GET", path)
                    answer = self._model_metadata(name, version)
                elif match.group(3) == "/config":
                    self._expect(request, "GET", path)
                    answer = self._model_config(name, version)
                else:
                    self._expect(request, "POST", path)
                    api = INFER_API
                    answer = self._infer(request, name, version)
        except ServingError as e:
            _RECORDER.error(name, e.code)
            return self._error(e)
        if isinstance(answer, HttpResponse):
            _RECORDER.ok(name, api, start)
            return answer
        return self._recorded(answer, name, api, start)

    async def _recorded(self, answer: Awaitable[HttpResponse], name: str, api: str,
                        start: int) -> HttpResponse:
        try:
            response = await answer
        except ServingError as e:
            _RECORDER.error(name, e.code)
            return self._error(e)
        _RECORDER.ok(name, api, start)
        return response

    @staticmethod
    def _expect(request: HttpRequest, method: str, path: str) -> None:
        if request.method != method:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Malformed request: {request.method} {path}")

    def _ok(self, body: bytes) -> HttpResponse:
        return HttpResponse(200, body, headers=self._cors)

    # --- metadata ------------------------------------------------------------------------------

    def _model_metadata(self, name: str, version: int | None) -> HttpResponse:
        body = model_metadata.served_model_metadata(self._core, self._signatures, name, version)
        return self._ok(json.dumps(body).encode())

    def _model_config(self, name: str, version: int | None) -> HttpResponse:
        config = model_config.served_model_config(self._core, self._signatures, name, version)
        return self._ok(json.dumps(model_config.config_json(config)).encode())

    # --- inference -------------------------------------------------------------------------

    def _infer(self, request: HttpRequest, name: str,
               version: int | None) -> HttpResponse | Awaitable[HttpResponse]:
        body = self._decompressed_body(request)
        length = rest_codec.header_length(request.headers, len(body))
        handle = self._core.get_servable_handle(name, version, None)
        try:
            bundle: SavedModelBundle = handle.servable
            signatures = self._signatures.of(bundle, handle.id)
            parsed, decode = rest_codec.parse_infer_request(body, length, self._limits)
            signature = signatures.get(infer.signature_name(parsed))
            inputs = infer.bind_inputs(signature.signature, parsed.inputs, decode, self._limits)
            aliases = infer.requested_aliases(signature.signature, parsed.outputs)
            # Batched runs compute every output: a subset would not join the batch.
            run_aliases = None if signatures.batching is not None else aliases
            timeout_in_ms = self._timeout_in_ms
            deadline = time.monotonic() + timeout_in_ms / 1e3 if timeout_in_ms > 0 else None
            run_start = time.monotonic_ns()
            outputs = bundle.run_inline(signature.key, inputs, run_aliases, timeout_in_ms,
                                        deadline)
        except BaseException:
            handle.release()
            raise
        if outputs is not None:
            _record_runtime(name, run_start)
            served = handle.id.version
            handle.release()
            return self._response(name, served, parsed, signature, aliases, outputs)
        return self._run(handle, bundle, name, signature, parsed, inputs, aliases, run_aliases,
                         timeout_in_ms, deadline)

    async def _run(self, handle: Any, bundle: SavedModelBundle, name: str,
                   signature: PredictSignature, parsed: infer.InferRequest,
                   inputs: dict[str, Any], aliases: list[str], run_aliases: list[str] | None,
                   timeout_in_ms: int, deadline: float | None) -> HttpResponse:
        with handle:
            run_start = time.monotonic_ns()
            outputs = await bundle.run_async(signature.key, inputs, run_aliases, timeout_in_ms,
                                             deadline)
            _record_runtime(name, run_start)
            served = handle.id.version
        return self._response(name, served, parsed, signature, aliases, outputs)

    def _response(self, name: str, version: int, parsed: infer.InferRequest,
                  signature: PredictSignature, aliases: list[str],
                  outputs: dict[str, Any]) -> HttpResponse:
        answer = infer.response_outputs(signature.signature, outputs, aliases)
        body, length = rest_codec.format_infer_response(
            name, str(version), parsed.id, answer, rest_codec.binary_outputs(parsed, answer),
            json_codec.format_predict_response)
        if length is None:
            return self._ok(body)
        headers = [*(self._cors or ()), (_HEADER_LENGTH, str(length).encode())]
        return HttpResponse(200, body, headers=headers, content_type=_BINARY)


def _record_runtime(model_name: str, start: int) -> None:
    """TF Serving's RecordRuntimeLatency of a successful run begun at ``start``
    (``time.monotonic_ns``), under the protocol's RPC name."""
    serving_metrics.record_runtime_latency(model_name, RUNTIME_API, "TF1",
                                           (time.monotonic_ns() - start) // 1000)
