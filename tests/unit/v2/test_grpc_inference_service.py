"""``inference.GRPCInferenceService`` served by an in-process GrpcServer: health through the
drain, deadlines, and requests that do not parse (what a real client cannot send)."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tfsfast.server import model_config as mc
from tfsfast.server.grpc.grpc_server import GrpcServer, GrpcServerOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2.grpc_inference_service import GrpcInferenceServiceImpl
from tfsfast.server.v2.grpc_protocol import SERVICE_NAME, message_class
from tfsfast.testing.call_context import CallContext
from tfsfast.util.run_cost import RunCostPolicy


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    root = tmp_path_factory.mktemp("v2_grpc_models")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("hp2", str(root / "hp2")),
        file_system_poll_wait_seconds=0, max_num_load_retries=0))
    yield core
    core.stop()


@pytest.fixture
def server(core: ServerCore, tmp_path: Path) -> Iterator[tuple[GrpcServer, grpc.Channel]]:
    """A server of its own per test (a drain cannot be undone), on a UNIX socket."""
    socket = tmp_path / "grpc.sock"
    s = GrpcServer(core, GrpcServerOptions(port=0, socket_path=str(socket), max_threads=4))
    s.start()
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        yield s, channel
    s.stop(None).wait()


def _call(channel: grpc.Channel, method: str, request: Any, timeout: float = 60) -> Any:
    response_class = message_class(method + "Response")
    call = channel.unary_unary(f"/{SERVICE_NAME}/{method}",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_class.FromString)
    return call(request, timeout=timeout)


def _infer_request() -> Any:
    request = message_class("ModelInferRequest")(model_name="hp2")
    x = request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    x.contents.fp32_contents.extend([1.0, 3.0])
    return request


def test_readiness_turns_off_with_the_drain(
        server: tuple[GrpcServer, grpc.Channel]) -> None:
    grpc_server, channel = server

    def health() -> tuple[bool, bool, bool]:
        return (_call(channel, "ServerLive", message_class("ServerLiveRequest")()).live,
                _call(channel, "ServerReady", message_class("ServerReadyRequest")()).ready,
                _call(channel, "ModelReady", message_class("ModelReadyRequest")(
                    name="hp2", version="1")).ready)

    assert health() == (True, True, True)
    grpc_server.begin_drain("draining")
    assert health() == (True, False, False)


def test_infer_with_a_deadline_runs(server: tuple[GrpcServer, grpc.Channel]) -> None:
    response = _call(server[1], "ModelInfer", _infer_request(), timeout=600)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", "FP32", [2, 1])]
    assert list(response.raw_output_contents) == [
        b"\x00\x00\x20\x40\x00\x00\x60\x40"]  # 2.5 and 3.5, little-endian float32


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady"])
def test_a_request_that_does_not_parse(server: tuple[GrpcServer, grpc.Channel],
                                       method: str) -> None:
    call = server[1].unary_unary(f"/{SERVICE_NAME}/{method}")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"\xff\xff", timeout=60)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Could not parse the request as a inference.{method}Request")


@pytest.mark.parametrize("inline_run_max_seconds, inline", [(math.inf, True), (0.0, False)])
def test_model_infer_runs_on_the_calling_thread_once_measured(
        core: ServerCore, inline_run_max_seconds: float, inline: bool) -> None:
    """As Predict on the completion-queue loop: a signature not measured yet runs in the pool
    (the answer is a continuation); once measured under the policy's limit, on the calling
    thread (the answer is the response)."""
    service = GrpcInferenceServiceImpl(core, ServerHealth(core), 1 << 20,
                                       run_cost_policy=RunCostPolicy(inline_run_max_seconds))
    data = _infer_request().SerializeToString()
    first = service.model_infer_answer(data, CallContext())
    assert not isinstance(first, bytes)
    response = first()
    second = service.model_infer_answer(data, CallContext())
    assert isinstance(second, bytes) == inline
    assert (second if isinstance(second, bytes) else second()) == response
    parsed = message_class("ModelInferResponse").FromString(response)
    assert list(parsed.raw_output_contents) == [b"\x00\x00\x20\x40\x00\x00\x60\x40"]
