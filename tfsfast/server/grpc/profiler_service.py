"""``tensorflow.ProfilerService`` on the gRPC port (``--enable_profiler``, TSL's
``profiler_service_impl.cc``).

What it is for: ``tf.profiler.experimental.client.trace("grpc://host:8500", logdir,
duration_ms)`` and TensorBoard's "Capture profile" ask the model server to trace itself for a
while and leave the trace where TensorBoard reads it. The trace is TensorFlow's own: the
profiler session of the TensorFlow libraries this process runs its models with. tfsfast's
runtime calls TensorFlow's C API from those same libraries (``libtensorflow_cc.so.2``,
``libtensorflow_framework.so.2``), so the session records every served run, its ``SessionRun``
and each op (``y:AddV2``), as TF Serving's does.

* ``Profile``: starts a profiler session (INTERNAL with TensorFlow's message when one is
  already running: ``Another profiling session active.``), waits ``opts.duration_ms``
  (checking every millisecond, as TSL does, whether the caller has gone: CANCELLED, or a
  ``Terminate`` for its ``session_id`` came: the trace so far is collected), then collects the
  ``XSpace`` and saves it as ``<repository_root>/<session_id>/<host>.xplane.pb`` (``host`` is
  ``opts.advanced_configuration["override_hostname"]`` when set, else ``host_name``), or with
  ``emit_xspace`` returns it in the response instead. ``empty_trace`` says whether any plane has
  an event: ``profiler_client.trace`` tries again on an empty one.
* ``Terminate``: ends the ``Profile`` of that ``session_id`` early.
* ``Monitor``: UNIMPLEMENTED ``unimplemented.``, as TSL answers.

TSL's continuous-profiling methods (``StartContinuousProfiling``, ``GetSnapshot``, ...) are not
served: gRPC answers them UNIMPLEMENTED. The repository is a local directory (TensorFlow's
file systems, which TF Serving writes ``gs://`` through, are not linked into this process).

How the session is reached: TensorFlow's Python binding ``_pywrap_profiler.ProfilerSession``
(the one ``tf.profiler.experimental.start`` uses), imported on the first ``Profile``, which
exports the ``XSpace`` into a directory of its own naming (``plugins/profile/<time>/``) that is
moved into place here. Its options dict rejects every integer in this TensorFlow build (it logs
``host_tracer_level expects an i value.`` and ignores it), so the request's tracer levels are
not passed on: TensorFlow's defaults apply (host 2, device 1, python 0), which are also
``profiler_client.trace``'s.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from tfsfast.server.grpc.protos import message_class

SERVICE_NAME = "tensorflow.ProfilerService"

_ProfileRequest = message_class("tensorflow.ProfileRequest")
_ProfileResponse = message_class("tensorflow.ProfileResponse")
_TerminateRequest = message_class("tensorflow.TerminateRequest")
_TerminateResponse = message_class("tensorflow.TerminateResponse")
_MonitorRequest = message_class("tensorflow.MonitorRequest")
_MonitorResponse = message_class("tensorflow.MonitorResponse")

# How often a Profile wakes up to see whether its caller went or a Terminate came (TSL's).
_POLL_SECONDS = 0.001

_log = logging.getLogger(__name__)


def xspace_is_empty(xspace: bytes) -> bool:
    """True when no line of any plane of the serialized ``XSpace`` has an event (TSL's
    ``IsEmpty``)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(xspace)
    return not any(line.events for plane in space.planes for line in plane.lines)


def _host_name(request: Any) -> str:
    override = request.opts.advanced_configuration.get("override_hostname")
    if override is not None and override.WhichOneof("value") == "string_value" \
            and override.string_value:
        return str(override.string_value)
    return str(request.host_name)


class ProfilerServiceImpl:
    """The service's handlers; thread-safe. TensorFlow allows one profiler session per process,
    so concurrent ``Profile`` calls after the first fail as TensorFlow says."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._terminated: set[str] = set()

    def profile(self, request: Any, context: grpc.ServicerContext) -> Any:
        from tensorflow.python.profiler.internal import _pywrap_profiler

        logdir = tempfile.mkdtemp(prefix="tfsfast_profile_")
        try:
            session = _pywrap_profiler.ProfilerSession()
            try:
                session.start(logdir, {})
            except Exception as e:  # AlreadyExistsError: another session runs
                message = getattr(e, "message", str(e))
                _log.error("Profile request refused: %s", message)
                context.abort(grpc.StatusCode.INTERNAL, message)
            _log.info("Profiling for %d ms (session %r)", request.opts.duration_ms,
                      request.session_id)
            try:
                self._wait(request, context)
            finally:
                session.export_to_tb()  # stops the session whatever happened
            if not context.is_active():
                context.abort(grpc.StatusCode.CANCELLED, "Cancelled")
            exported = sorted(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
            if len(exported) != 1:
                context.abort(grpc.StatusCode.INTERNAL,
                              f"the profiler session saved {len(exported)} traces, not one")
            xspace = exported[0].read_bytes()
            response = _ProfileResponse(empty_trace=xspace_is_empty(xspace))
            if request.emit_xspace:
                response.xspace = xspace
                return response
            try:
                target = Path(request.repository_root, request.session_id)
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(exported[0], target / f"{_host_name(request)}.xplane.pb")
            except OSError as e:
                context.abort(grpc.StatusCode.INTERNAL, f"{e.strerror}: {e.filename}")
            return response
        finally:
            shutil.rmtree(logdir, ignore_errors=True)

    def _wait(self, request: Any, context: grpc.ServicerContext) -> None:
        """Until ``opts.duration_ms`` have passed, the caller has gone, or a Terminate came."""
        until = time.monotonic() + request.opts.duration_ms / 1000
        while time.monotonic() < until and context.is_active():
            with self._lock:
                if request.session_id in self._terminated:
                    self._terminated.discard(request.session_id)
                    return
            time.sleep(_POLL_SECONDS)

    def terminate(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._terminated.add(request.session_id)
        return _TerminateResponse()

    @staticmethod
    def monitor(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Profile": grpc.unary_unary_rpc_method_handler(
                self.profile, request_deserializer=_ProfileRequest.FromString,
                response_serializer=_ProfileResponse.SerializeToString),
            "Terminate": grpc.unary_unary_rpc_method_handler(
                self.terminate, request_deserializer=_TerminateRequest.FromString,
                response_serializer=_TerminateResponse.SerializeToString),
            "Monitor": grpc.unary_unary_rpc_method_handler(
                self.monitor, request_deserializer=_MonitorRequest.FromString,
                response_serializer=_MonitorResponse.SerializeToString),
        })


__all__ = ["SERVICE_NAME", "ProfilerServiceImpl", "xspace_is_empty"]
