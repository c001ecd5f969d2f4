"""Triton's model configuration of a served SavedModel: built from a signature, written as
Triton's JSON, and served by the REST ``/config`` route and gRPC's ModelConfig of an in-process
ServerCore, batched and not."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tfsfast.batching import batching_parameters as bp
from tfsfast.batching.batching_parameters import QueueOptions
from tfsfast.core.servable_state import ManagerState
from tfsfast.runtime.dtypes import DataType
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.grpc.grpc_server import GrpcServer, GrpcServerOptions
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.v2 import model_config
from tfsfast.server.v2.grpc_protocol import SERVICE_NAME, message_class
from tfsfast.sources.servable_version_policy import ServableVersionPolicy
from tfsfast.testing import export_models, runtime_models
from tfsfast.testing.wait import wait_until

from .signatures import SIGNATURE

# What Triton's JSON holds for every input and output besides name, data_type and dims.
INPUT_DEFAULTS = {"format": "FORMAT_NONE", "is_shape_tensor": False, "allow_ragged_batch": False,
                  "optional": False, "is_non_linear_format_io": False}
OUTPUT_DEFAULTS = {"label_filename": "", "is_shape_tensor": False,
                   "is_non_linear_format_io": False}
# ... and for the model.
MODEL_DEFAULTS = {"runtime": "", "batch_input": [], "batch_output": [], "instance_group": [],
                  "default_model_filename": "", "cc_model_filenames": {}, "metric_tags": {},
                  "parameters": {}, "model_warmup": []}
RESHAPE_TO_SCALAR = {"reshape": {"shape": []}}


def _tensor(name: str, data_type: str, dims: list[int], defaults: dict[str, Any],
            **more: Any) -> dict[str, Any]:
    return {"name": name, "data_type": data_type, "dims": dims, **more, **defaults}


@pytest.mark.parametrize(("dtype", "name"), [
    (DataType.DT_FLOAT, "TYPE_FP32"), (DataType.DT_HALF, "TYPE_FP16"),
    (DataType.DT_BFLOAT16, "TYPE_BF16"), (DataType.DT_UINT64, "TYPE_UINT64"),
    (DataType.DT_BOOL, "TYPE_BOOL"), (DataType.DT_STRING, "TYPE_STRING"),
    (DataType.DT_COMPLEX64, "TYPE_INVALID"), (DataType.DT_QINT8, "TYPE_INVALID"),
])
def test_config_data_type(dtype: DataType, name: str) -> None:
    assert model_config.config_data_type(dtype) == name


def test_unbatched_config_as_triton_writes_it() -> None:
    config = model_config.model_config("m", SIGNATURE, ServableVersionPolicy.latest())
    assert model_config.config_json(config) == {
        "name": "m", "platform": "tensorflow_savedmodel", "backend": "tensorflow",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,
        "input": [
            _tensor("a", "TYPE_STRING", [-1], INPUT_DEFAULTS),  # unknown rank
            _tensor("m", "TYPE_FP16", [1], INPUT_DEFAULTS, **RESHAPE_TO_SCALAR),
            _tensor("z", "TYPE_FP32", [-1, 3], INPUT_DEFAULTS),
        ],
        "output": [
            _tensor("c", "TYPE_INVALID", [2, -1], OUTPUT_DEFAULTS),
            _tensor("out", "TYPE_INT64", [-1], OUTPUT_DEFAULTS),
        ],
        **MODEL_DEFAULTS,
    }


def test_batched_config_drops_the_batch_dimension() -> None:
    config = model_config.model_config(
        "m", SIGNATURE, ServableVersionPolicy.all(),
        QueueOptions(max_batch_size=32, batch_timeout_micros=(1 << 40) + 7))
    body = model_config.config_json(config)
    assert (body["max_batch_size"], body["version_policy"]) == (32, {"all": {}})
    assert [(t["name"], t["dims"], t.get("reshape")) for t in body["input"] + body["output"]] == [
        ("a", [-1], None), ("m", [1], {"shape": []}), ("z", [3], None),
        ("c", [-1], None), ("out", [1], {"shape": []})]
    # A 64-bit field is a JSON number, as Triton writes it (protobuf's JSON has a string).
    assert body["dynamic_batching"] == {
        "max_queue_delay_microseconds": (1 << 40) + 7, "preferred_batch_size": [],
        "preserve_ordering": False, "priority_levels": 0, "default_priority_level": 0,
        "priority_queue_policy": {}}
    assert config.dynamic_batching.max_queue_delay_microseconds == (1 << 40) + 7


@pytest.mark.parametrize(("policy", "triton"), [
    (ServableVersionPolicy.latest(3), {"latest": {"num_versions": 3}}),
    (ServableVersionPolicy.all(), {"all": {}}),
    (ServableVersionPolicy.specific([12, 3]), {"specific": {"versions": [3, 12]}}),
    (ServableVersionPolicy.specific([]), {"specific": {"versions": []}}),
])
def test_version_policy(policy: ServableVersionPolicy, triton: dict[str, Any]) -> None:
    config = model_config.model_config("m", SIGNATURE, policy)
    assert model_config.config_json(config)["version_policy"] == triton


# --- served ------------------------------------------------------------------------------------


def _create(config: str, batching: str | None = None) -> ServerCore:
    return ServerCore.create(ServerCoreOptions(
        model_server_config=mc.parse_model_server_config(config),
        file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(
            enable_model_warmup=False,
            batching_parameters=None if batching is None else bp.parse_batching_parameters(
                batching))))


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    root = tmp_path_factory.mktemp("v2_config")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    shutil.copytree(exported_models["tf1_three"], root / "hp2" / "2")
    export_models.export_multi_io(str(root / "multi" / "1"))
    runtime_models.export_dtype_round_trip(str(root / "dtypes" / "1"))
    core = _create(
        "model_config_list {\n"
        f'  config {{ name: "hp2" base_path: "{root / "hp2"}" model_platform: "tensorflow"\n'
        "           model_version_policy { specific { versions: 2 versions: 1 } } }\n"
        f'  config {{ name: "multi" base_path: "{root / "multi"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "dtypes" base_path: "{root / "dtypes"}" '
        'model_platform: "tensorflow" }\n'
        "}\n")
    wait_until(lambda: [s.state.manager_state for s in
                        core.servable_state_monitor.get_version_states("hp2").values()] == [
        ManagerState.AVAILABLE] * 2, "both versions of hp2 to be available")
    yield core
    core.stop()


@pytest.fixture(scope="module")
def batching_core(tmp_path_factory: pytest.TempPathFactory,
                  exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    root = tmp_path_factory.mktemp("v2_config_batching")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    shutil.copytree(exported_models["tf2"], root / "tf2" / "4")
    core = _create(
        "model_config_list {\n" + "".join(
            f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" '
            "}\n" for name in ("hp2", "tf2")) + "}\n",
        "max_batch_size { value: 16 } batch_timeout_micros { value: 250 } "
        "num_batch_threads { value: 1 }")
    yield core
    core.stop()


def rest(core: ServerCore, method: str, path: str) -> tuple[int, Any]:
    result = HttpRestApiHandler(core)(HttpRequest(method, path.encode(), {}, b"", True))
    if not isinstance(result, HttpResponse):
        async def wait() -> HttpResponse:
            return await result

        result = asyncio.run(wait())
    assert result.content_type == b"application/json"
    return result.status, json.loads(result.body)


HP2_TENSORS = {
    "input": [_tensor("x", "TYPE_FP32", [-1, 1], INPUT_DEFAULTS)],
    "output": [_tensor("y", "TYPE_FP32", [-1, 1], OUTPUT_DEFAULTS)],
}


@pytest.mark.parametrize("path", ["/v2/models/hp2/config", "/v2/models/%68p2/versions/1/config",
                                  "/v2/models/hp2/versions/2/config?x=1"])
def test_rest_config(core: ServerCore, path: str) -> None:
    assert rest(core, "GET", path) == (200, {
        "name": "hp2", "platform": "tensorflow_savedmodel", "backend": "tensorflow",
        "version_policy": {"specific": {"versions": [1, 2]}}, "max_batch_size": 0,
        **HP2_TENSORS, **MODEL_DEFAULTS})


def test_rest_config_of_a_model_with_several_tensors(core: ServerCore) -> None:
    status, body = rest(core, "GET", "/v2/models/multi/config")
    assert (status, body["version_policy"]) == (200, {"latest": {"num_versions": 1}})
    assert [(t["name"], t["data_type"], t["dims"]) for t in body["input"]] == [
        ("a", "TYPE_FP32", [-1, 2]), ("b", "TYPE_INT64", [-1]), ("s", "TYPE_STRING", [-1])]


@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/v2/models/nope/config", 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v2/models/hp2/versions/9/config", 404,
     "Servable not found for request: Specific(hp2, 9)"),
    ("GET", "/v2/models/dtypes/config", 400, 'Serving signature key "serving_default" not found.'),
    ("POST", "/v2/models/hp2/config", 400, "Malformed request: POST /v2/models/hp2/config"),
])
def test_rest_config_errors(core: ServerCore, method: str, path: str, status: int,
                            message: str) -> None:
    assert rest(core, method, path) == (status, {"error": message})


def test_rest_config_of_batched_models(batching_core: ServerCore) -> None:
    batched = {"max_batch_size": 16, "dynamic_batching": {
        "max_queue_delay_microseconds": 250, "preferred_batch_size": [],
        "preserve_ordering": False, "priority_levels": 0, "default_priority_level": 0,
        "priority_queue_policy": {}}}
    status, body = rest(batching_core, "GET", "/v2/models/hp2/config")
    assert status == 200
    assert {k: body[k] for k in ("max_batch_size", "dynamic_batching", "input", "output")} == {
        **batched,
        "input": [_tensor("x", "TYPE_FP32", [1], INPUT_DEFAULTS)],
        "output": [_tensor("y", "TYPE_FP32", [1], OUTPUT_DEFAULTS)]}
    status, body = rest(batching_core, "GET", "/v2/models/tf2/versions/4/config")
    assert status == 200
    assert {k: body[k] for k in ("max_batch_size", "dynamic_batching", "input", "output")} == {
        **batched,
        "input": [_tensor("x", "TYPE_FP32", [1], INPUT_DEFAULTS, **RESHAPE_TO_SCALAR)],
        "output": [_tensor("y", "TYPE_FP32", [1], OUTPUT_DEFAULTS, **RESHAPE_TO_SCALAR)]}


@pytest.fixture
def channel(core: ServerCore, tmp_path: Path) -> Iterator[grpc.Channel]:
    socket = tmp_path / "grpc.sock"
    server = GrpcServer(core, GrpcServerOptions(port=0, socket_path=str(socket), max_threads=4))
    server.start()
    with grpc.insecure_channel(f"unix:{socket}") as c:
        yield c
    server.stop(None).wait()


def _model_config(channel: grpc.Channel, name: str, version: str = "") -> Any:
    call = channel.unary_unary(
        f"/{SERVICE_NAME}/ModelConfig", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=message_class("ModelConfigResponse").FromString)
    return call(message_class("ModelConfigRequest")(name=name, version=version), timeout=60)


def test_grpc_config_is_the_rest_one(core: ServerCore, channel: grpc.Channel) -> None:
    for version in ("", "2"):
        config = _model_config(channel, "hp2", version).config
        assert model_config.config_json(config) == rest(core, "GET", "/v2/models/hp2/config")[1]
    assert list(_model_config(channel, "hp2").config.version_policy.specific.versions) == [1, 2]


@pytest.mark.parametrize(("name", "version", "code", "message"), [
    ("nope", "", grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("hp2", "9", grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(hp2, 9)"),
    ("hp2", "v1", grpc.StatusCode.INVALID_ARGUMENT, "Failed to convert version: v1 to numeric."),
])
def test_grpc_config_errors(channel: grpc.Channel, name: str, version: str,
                            code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _model_config(channel, name, version)
    assert (raised.value.code(), raised.value.details()) == (code, message)
