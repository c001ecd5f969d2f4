"""``tensorflow.ProfilerService`` (``--enable_profiler``) on a real server, driven by
TensorFlow's own profiler client.

The acceptance case is TF Serving's ``test_profiler_service_with_valid_trace_request``:
``profiler_client.trace`` against the gRPC port while REST predicts run. Beyond TF Serving's
test, which only checks that the call succeeds, the trace it leaves is read back and must hold
the served model's own ops.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tfsfast.server.grpc.protos import message_class
from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.wait import WAIT_SECONDS

pytestmark = pytest.mark.integration

ProfileRequest = message_class("tensorflow.ProfileRequest")
ProfileResponse = message_class("tensorflow.ProfileResponse")
TerminateRequest = message_class("tensorflow.TerminateRequest")
TerminateResponse = message_class("tensorflow.TerminateResponse")
MonitorRequest = message_class("tensorflow.MonitorRequest")
MonitorResponse = message_class("tensorflow.MonitorResponse")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("profiled") / "default"
    shutil.copytree(exported_models["tf1"], base / "1")
    with ServerProcess(["--model_name=default", f"--model_base_path={base}"]) as s:
        yield s


def _call(server: ServerProcess, method: str, request: Any, response: Any,
          timeout: float = WAIT_SECONDS) -> Any:
    with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
        call = channel.unary_unary(f"/tensorflow.ProfilerService/{method}",
                                   request_serializer=type(request).SerializeToString,
                                   response_deserializer=response.FromString)
        return call(request, timeout=timeout)


def _event_names(xspace: bytes) -> set[str]:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(xspace)
    return {plane.event_metadata[event.metadata_id].name
            for plane in space.planes for line in plane.lines for event in line.events}


def test_profiler_service_with_valid_trace_request(server: ServerProcess,
                                                   tmp_path: Path) -> None:
    from tensorflow.python.profiler import profiler_client

    # As TF Serving's test: predicts keep coming while the trace runs.
    stop = threading.Event()
    answers: list[tuple[int, Any]] = []

    def predict() -> None:
        while not stop.is_set():
            answers.append(server.json("POST", "/v1/models/default:predict",
                                       {"instances": [2.0, 3.0, 4.0]}))
            stop.wait(0.05)

    sender = threading.Thread(target=predict)
    sender.start()
    logdir = tmp_path / "logs"
    logdir.mkdir()
    try:
        profiler_client.trace(f"localhost:{server.grpc_port}", str(logdir), 1000, "", 10)
    finally:
        stop.set()
        sender.join()
    assert answers and set(json.dumps(a) for a in answers) == {
        json.dumps([200, {"predictions": [3.0, 3.5, 4.0]}])}
    # profiler_client asks for <logdir>/plugins/profile/<session>/<host>.xplane.pb.
    traces = list(logdir.glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1, traces
    names = _event_names(traces[0].read_bytes())
    # The served model's own ops (y = 0.5 * x + 2), run through the C API's session.
    assert "SessionRun" in names
    assert {name.split(":")[-1] for name in names} >= {"Mul", "AddV2"}, sorted(names)


def test_emit_xspace_answers_the_trace_and_saves_nothing(server: ServerProcess,
                                                         tmp_path: Path) -> None:
    request = ProfileRequest(repository_root=str(tmp_path), session_id="s", host_name="h",
                             emit_xspace=True)
    request.opts.duration_ms = 1
    response = _call(server, "Profile", request, ProfileResponse)
    assert response.xspace and response.empty_trace == (not _event_names(response.xspace))
    assert list(tmp_path.iterdir()) == []


def test_saved_under_the_session_and_the_overridden_host(server: ServerProcess,
                                                         tmp_path: Path) -> None:
    request = ProfileRequest(repository_root=str(tmp_path / "repo"), session_id="run1",
                             host_name="ignored")
    request.opts.duration_ms = 1
    request.opts.advanced_configuration["override_hostname"].string_value = "worker-0"
    response = _call(server, "Profile", request, ProfileResponse)
    assert not response.xspace
    assert [p.relative_to(tmp_path) for p in (tmp_path / "repo").rglob("*.pb")] == [
        Path("repo/run1/worker-0.xplane.pb")]


def test_terminate_ends_a_profile_and_one_session_runs_at_a_time(
        server: ServerProcess) -> None:
    session_id = uuid.uuid4().hex
    long = ProfileRequest(session_id=session_id, emit_xspace=True)
    long.opts.duration_ms = 3_600_000  # an hour: only a Terminate ends it within the deadline
    outcome: list[Any] = []

    def profile() -> None:
        try:
            outcome.append(_call(server, "Profile", long, ProfileResponse))
        except grpc.RpcError as e:
            outcome.append(e)

    runner = threading.Thread(target=profile)
    runner.start()
    server.wait_for_log(f"Profiling for 3600000 ms (session '{session_id}')")
    # While it runs, TensorFlow refuses a second session: INTERNAL, its message.
    short = ProfileRequest(emit_xspace=True)
    short.opts.duration_ms = 1
    with pytest.raises(grpc.RpcError) as refused:
        _call(server, "Profile", short, ProfileResponse)
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.INTERNAL, "Another profiling session active.")
    assert _call(server, "Terminate", TerminateRequest(session_id=session_id),
                 TerminateResponse) == TerminateResponse()
    runner.join()
    assert len(outcome) == 1 and isinstance(outcome[0], ProfileResponse), outcome
    assert outcome[0].xspace
    # The session ended: the next one starts.
    again = ProfileRequest(emit_xspace=True)
    again.opts.duration_ms = 1
    assert _call(server, "Profile", again, ProfileResponse).xspace


def test_monitor_is_unimplemented_as_in_tsl(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _call(server, "Monitor", MonitorRequest(duration_ms=1), MonitorResponse)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")


def test_served_by_default_and_absent_when_disabled(server: ServerProcess,
                                                    model_base: Any) -> None:
    # The default serves it without a word about it.
    assert not [line for line in server.log_lines if "enable_profiler" in line]
    request = ProfileRequest(emit_xspace=True)
    with ServerProcess([f"--model_base_path={model_base('m', v1='tf1')}", "--model_name=m",
                        "--enable_profiler=false"]) as off:
        assert off.json("POST", "/v1/models/m:predict", {"instances": [2.0]}) == (
            200, {"predictions": [3.0]})
        with pytest.raises(grpc.RpcError) as raised:
            _call(off, "Profile", request, ProfileResponse)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert not [line for line in off.log_lines if "profiler" in line.lower()]
