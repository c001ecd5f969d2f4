"""``tensorflow.serving.ModelService``: TF Serving's ``model_service_impl.cc``.

* GetModelStatus: ``Missing ModelSpec``; with a version, that version's status (NOT_FOUND
  ``Could not find version V of model M``); otherwise every version, highest first (NOT_FOUND
  ``Could not find any versions of model M``). A label is ignored, as in TF Serving.
* HandleReloadConfigRequest: only a ``model_config_list`` is accepted; the new list *replaces*
  the served one (dropped models are unloaded) and the call returns once every new model is
  available, or fails with the previous config still in force (``ServerCore.reload_config``),
  within ``--reload_config_timeout_seconds`` or the call's deadline, whichever comes first. The
  outcome is the gRPC status and, on success, ``response.status`` (gRPC sends no response
  message with an error status). For each of ``metric_names`` (a metric's name in the registry,
  ``/tensorflow/serving/request_count``), ``response.metric`` says how much it grew during the
  reload, as TF Serving's ``RecordMetricsIncrease``: the value of its first point (label values
  in order; 0 for a metric without points, a histogram, or a name not registered) after, less
  before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from tfsfast.monitoring.collection_registry import DEFAULT, CollectionRegistry
from tfsfast.server.get_model_status_impl import get_model_status
from tfsfast.server.grpc import grpc_status_util
from tfsfast.server.grpc.prediction_service_impl import missing_model_spec
from tfsfast.server.server_core import ServerCore
from tfsfast.util.status import Code, ServingError

SERVICE_NAME = "tensorflow.serving.ModelService"

_log = logging.getLogger(__name__)


def reload_timeout(context: grpc.ServicerContext) -> float | None:
    """How long a reload the call asks for may take, in seconds (None: the call has no
    deadline; the server's reload timeout still bounds it).

    A reload still under way once the caller has given up would change the server behind its
    back: the deadline bounds it too, less a margin for the rollback and the answer, so that the
    caller learns why it failed (not just DEADLINE_EXCEEDED).
    """
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return remaining - min(1.0, remaining / 10)


class ModelServiceImpl:
    """The service's handlers; thread-safe (reloads are serialized by the core)."""

    def __init__(self, core: ServerCore, registry: CollectionRegistry = DEFAULT) -> None:
        self._core = core
        self._registry = registry

    def _metric_values(self, names: Sequence[str]) -> dict[str, int]:
        """TF Serving's ``GetMetrics``: each name's first int64 point, else 0."""
        wanted = set(names)
        values = dict.fromkeys(wanted, 0)
        for metric in self._registry.collect():
            name = metric.descriptor.name
            if name in wanted and metric.points and metric.descriptor.value_type == "int64":
                values[name] = int(metric.points[0].value)  # type: ignore[arg-type]
        return values

    def get_model_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.HasField("model_spec"):
            raise missing_model_spec()
        spec = request.model_spec
        version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
        return get_model_status(self._core.servable_state_monitor, spec.name, version)

    def handle_reload_config_request(self, request: Any, context: grpc.ServicerContext) -> Any:
        from tensorflow_serving.apis import model_management_pb2

        config = request.config
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError(Code.INVALID_ARGUMENT,
                               "ServerModelConfig type not supported by "
                               "HandleReloadConfigRequest. Only ModelConfigList is currently "
                               "supported")
        for index, model in enumerate(config.model_config_list.config):
            _log.info("Config entry index : %d path : %s name : %s platform : %s", index,
                      model.base_path, model.name, model.model_platform)
        before = self._metric_values(request.metric_names)
        try:
            self._core.reload_config(config, timeout=reload_timeout(context))
        except ServingError as e:
            _log.error("ReloadConfig failed: %s", e.message)
            raise
        after = self._metric_values(request.metric_names)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = Code.OK
        for name in dict.fromkeys(request.metric_names):
            response.metric.add(name=name, int64_value_increase=after[name] - before[name])
        return response

    @staticmethod
    def _guarded(method: Callable[[Any, grpc.ServicerContext], Any]
                 ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(request, context)
            except ServingError as e:
                grpc_status_util.abort(context, e)
            except Exception as e:  # a bug must not take the server down: INTERNAL
                grpc_status_util.abort(context, grpc_status_util.internal_error(e))

        return handler

    def handler(self) -> grpc.GenericRpcHandler:
        from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "GetModelStatus": grpc.unary_unary_rpc_method_handler(
                self._guarded(self.get_model_status),
                request_deserializer=get_model_status_pb2.GetModelStatusRequest.FromString,
                response_serializer=get_model_status_pb2.GetModelStatusResponse
                .SerializeToString),
            "HandleReloadConfigRequest": grpc.unary_unary_rpc_method_handler(
                self._guarded(self.handle_reload_config_request),
                request_deserializer=model_management_pb2.ReloadConfigRequest.FromString,
                response_serializer=model_management_pb2.ReloadConfigResponse
                .SerializeToString),
        })
