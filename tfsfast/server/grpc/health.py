"""``grpc.health.v1.Health`` (``--enable_grpc_healthcheck_service``).

Statuses are kept for the whole server (service ``""``) and for TF Serving's two services, under
their full names and the short names TF Serving registers (``PredictionService``,
``ModelService``). Everything is NOT_SERVING until the server says its models are available
(``set_serving(True)``), and again from the moment a SIGTERM turns the server's readiness off
(``ServerHealth.start_draining``, before ``--shutdown_delay_seconds`` and the drain). An unknown
service is NOT_FOUND on ``Check`` and SERVICE_UNKNOWN on ``Watch``, as the standard
implementations answer.

``Watch`` streams hold a handler thread each, so at most ``max_watchers`` run at once (beyond,
RESOURCE_EXHAUSTED); they end when the client goes or the server stops.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from tfsfast.server.grpc.protos import message_class

SERVICE_NAME = "grpc.health.v1.Health"
SERVICES = ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "PredictionService", "ModelService")

_Request = message_class("grpc.health.v1.HealthCheckRequest")
_Response = message_class("grpc.health.v1.HealthCheckResponse")
SERVING = _Response.SERVING
NOT_SERVING = _Response.NOT_SERVING
SERVICE_UNKNOWN = _Response.SERVICE_UNKNOWN


class HealthServicer:
    """Thread-safe: statuses change from the server's thread, handlers read from gRPC's."""

    def __init__(self, max_watchers: int = 4) -> None:
        self._statuses = dict.fromkeys(SERVICES, NOT_SERVING)
        self._changed = threading.Condition()
        self._version = 0
        self._stopped = False
        self._watchers = 0
        self._max_watchers = max(1, max_watchers)

    def set_serving(self, serving: bool) -> None:
        with self._changed:
            for name in self._statuses:
                self._statuses[name] = SERVING if serving else NOT_SERVING
            self._version += 1
            self._changed.notify_all()

    def status(self, service: str) -> int | None:
        return self._statuses.get(service)

    def stop(self) -> None:
        """Ends every Watch stream (the server is going away)."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def check(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = self._statuses.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return _Response(status=status)

    def watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._changed:
            if self._watchers >= self._max_watchers:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"Too many health Watch streams (at most {self._max_watchers})")
            self._watchers += 1
        context.add_callback(self._wake)
        try:
            last = None
            while True:
                with self._changed:
                    status = self._statuses.get(request.service, SERVICE_UNKNOWN)
                    version = self._version
                    stopped = self._stopped
                if status != last:  # a final change (NOT_SERVING on drain) is still sent
                    yield _Response(status=status)
                    last = status
                if stopped or not context.is_active():
                    return
                with self._changed:
                    while (self._version == version and not self._stopped
                           and context.is_active()):
                        self._changed.wait()
        finally:
            with self._changed:
                self._watchers -= 1

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Check": grpc.unary_unary_rpc_method_handler(
                self.check, request_deserializer=_Request.FromString,
                response_serializer=_Response.SerializeToString),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self.watch, request_deserializer=_Request.FromString,
                response_serializer=_Response.SerializeToString),
        })
