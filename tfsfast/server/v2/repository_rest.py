"""``RepositoryRestApi``: the model repository extension's REST routes (``model_repository``).

Served on the REST port by ``HttpRestApiHandler`` beside the other V2 routes:

- ``POST /v2/repository/index``, body empty or ``{"ready": <bool>}``: 200 with the index, a JSON
  array of ``{"name", "version", "state", "reason"}`` objects (a field that is empty is left
  out, as Triton does for a model never loaded).
- ``POST /v2/repository/models/<name>/load`` and ``.../unload``, body empty or
  ``{"parameters": {...}}``: 200 with an empty body once the model is loaded (or unloaded).

Names are percent-decoded. Another method on these paths is 400 ``Malformed request: <method>
<path>``, OPTIONS the CORS preflight, as on the other routes; a body that is not such a JSON
object is 400. Errors are the protocol's ``{"error": "<message>"}`` with the status TF Serving's
mapping gives their code. A load or unload runs on the default executor of the loop (it lasts as
long as the load), bounded by ``--reload_config_timeout_seconds``. These calls manage the server
and are not counted in ``request_count`` (as ``HandleReloadConfigRequest`` is not).

Thread-compatible: called on the REST loop only, as the handler.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.v2.model_repository import ModelRepository
from tfsfast.server.v2.remote_model_repository import RemoteModelRepository
from tfsfast.util.status import Code, ServingError

__all__ = ["RepositoryRestApi"]

_PREFIX = "/v2/repository/"
_INDEX_PATH = "/v2/repository/index"
_MODEL_RE = re.compile(r"/v2/repository/models/([^/]+)/(load|unload)")


class RepositoryRestApi:
    """The routes over ``repository`` (see the module docstring: a REST worker's is the server
    process's, ``RemoteModelRepository``); ``cors_headers``,
    ``decompressed_body``, ``error`` and ``preflight`` are the REST handler's, as ``V2RestApi``
    takes them."""

    def __init__(self, repository: ModelRepository | RemoteModelRepository,
                 cors_headers: list[tuple[bytes, bytes]] | None,
                 decompressed_body: Callable[[HttpRequest], bytes],
                 error: Callable[[ServingError], HttpResponse],
                 preflight: Callable[[HttpRequest], HttpResponse]) -> None:
        self._repository = repository
        self._cors = cors_headers
        self._decompressed_body = decompressed_body
        self._error = error
        self._preflight = preflight

    def __call__(self, request: HttpRequest,
                 path: str) -> HttpResponse | Awaitable[HttpResponse] | None:
        """The answer to ``request`` at ``path``, or None when ``path`` is not a route here."""
        if not path.startswith(_PREFIX):
            return None
        match = None
        if path != _INDEX_PATH:
            match = _MODEL_RE.fullmatch(path)
            if match is None:
                return None
        if request.method == "OPTIONS":
            return self._preflight(request)
        try:
            if request.method != "POST":
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Malformed request: {request.method} {path}")
            body = self._body(request)
            if match is None:
                ready = body.get("ready", False)
                if not isinstance(ready, bool):
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       "Repository index 'ready' must be a boolean")
                entries = [{k: v for k, v in asdict(e).items() if v}
                           for e in self._repository.index(ready)]
                return HttpResponse(200, json.dumps(entries).encode(), headers=self._cors)
            parameters = body.get("parameters", {})
            if not isinstance(parameters, dict):
                raise ServingError(Code.INVALID_ARGUMENT,
                                   "Repository request 'parameters' must be a JSON object")
            name = unquote(match.group(1), errors="replace")
            action = (self._repository.load if match.group(2) == "load"
                      else self._repository.unload)
        except ServingError as e:
            return self._error(e)
        return self._run(action, name, parameters)

    def _body(self, request: HttpRequest) -> dict[str, Any]:
        """The request's JSON object ({} for an empty body)."""
        body = self._decompressed_body(request)
        if not body.strip():
            return {}
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Malformed repository request body: {e}") from None
        if not isinstance(parsed, dict):
            raise ServingError(Code.INVALID_ARGUMENT,
                               "Malformed repository request body: expected a JSON object")
        return parsed

    async def _run(self, action: Callable[[str, dict[str, Any]], None], name: str,
                   parameters: dict[str, Any]) -> HttpResponse:
        try:
            await asyncio.get_running_loop().run_in_executor(None, action, name, parameters)
        except ServingError as e:
            return self._error(e)
        return HttpResponse(200, b"", headers=self._cors)
