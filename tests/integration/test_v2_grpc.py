"""A real tfsfast process driven over the Open Inference Protocol's gRPC service by Triton's
``tritonclient.grpc`` client.

The client runs in a child Python process (``_client``): its generated modules add the
protocol's messages to protobuf's default descriptor pool, where the KServe SDK, which other
tests of this run import, defines the same symbols in another file, and a process cannot hold
both. Each child runs a snippet with ``client`` (an ``InferenceServerClient`` of the server),
``np``, ``triton`` (``tritonclient.grpc``) and ``error(call)`` (a failing call's ``(status,
message)``), and hands back the value of its ``result``.

Models: half_plus_two (``hp2``, x float [-1, 1]), the multi-input, multi-output model with
strings (``multi``), and the dtype round-trip model (``dtypes``: one signature per dtype,
picked with the ``signature_name`` parameter); and a batching server whose batches of two wait
for their second row.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from prometheus_client.parser import text_string_to_metric_families

from tfsfast import __version__
from tfsfast.server.grpc import protos
from tfsfast.testing import export_models, runtime_models, triton_grpc_child
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

METRICS_PATH = "/monitoring/prometheus/metrics"
MAX_MESSAGE_BYTES = 1_000_000

def _client(server: ServerProcess, snippet: str) -> Any:
    """The ``result`` of ``snippet`` run in a child with a client of ``server`` (see the module
    docstring)."""
    return triton_grpc_child.run(f"127.0.0.1:{server.grpc_port}", snippet)


def _config(root: Path, names: tuple[str, ...]) -> Path:
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in names) + "}\n")
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("v2_grpc")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    export_models.export_multi_io(str(root / "multi" / "1"))
    runtime_models.export_dtype_round_trip(str(root / "dtypes" / "1"))
    config = _config(root, ("hp2", "multi", "dtypes"))
    monitoring = root / "monitoring_config.txt"
    monitoring.write_text(f'prometheus_config: {{ enable: true, path: "{METRICS_PATH}" }}\n')
    with ServerProcess([f"--model_config_file={config}",
                        f"--monitoring_config_file={monitoring}",
                        f"--grpc_max_message_bytes={MAX_MESSAGE_BYTES}"]) as s:
        yield s


def test_health_and_metadata(server: ServerProcess) -> None:
    assert _client(server, """
        def metadata(m):
            return (m.name, list(m.versions), m.platform,
                    [(t.name, t.datatype, list(t.shape)) for t in m.inputs],
                    [(t.name, t.datatype, list(t.shape)) for t in m.outputs])

        server = client.get_server_metadata()
        result = [
            client.is_server_live(), client.is_server_ready(),
            client.is_model_ready("hp2"), client.is_model_ready("hp2", "1"),
            error(lambda: client.is_model_ready("nope")),
            error(lambda: client.is_model_ready("hp2", "2")),
            (server.name, server.version, list(server.extensions)),
            metadata(client.get_model_metadata("hp2")),
            metadata(client.get_model_metadata("hp2", "1")),
            metadata(client.get_model_metadata("multi")),
        ]
    """) == [
        True, True, True, True,
        ("StatusCode.NOT_FOUND", "Model with name nope does not exist."),
        ("StatusCode.NOT_FOUND", "Could not find version 2 of model hp2"),
        ("tfsfast", __version__, ["binary_tensor_data", "model_repository", "model_configuration"]),
        ("hp2", ["1"], "tensorflow_savedmodel", [("x", "FP32", [-1, 1])],
         [("y", "FP32", [-1, 1])]),
        ("hp2", ["1"], "tensorflow_savedmodel", [("x", "FP32", [-1, 1])],
         [("y", "FP32", [-1, 1])]),
        ("multi", ["1"], "tensorflow_savedmodel",
         [("a", "FP32", [-1, 2]), ("b", "INT64", [-1]), ("s", "BYTES", [-1])],
         [("positive", "BOOL", [-1]), ("s_bytes", "BYTES", [-1]), ("text", "BYTES", [-1]),
          ("total", "FP32", [-1])]),
    ]


def test_infer_echoes_the_id_and_answers_raw(server: ServerProcess) -> None:
    assert _client(server, """
        x = np.array([[1.0], [2.0], [5.0]], np.float32)
        result = client.infer("hp2", [tensor("x", x, "FP32")], request_id="r-7")
        response = result.get_response()
        result = (response.model_name, response.model_version, response.id, outputs(result),
                  len(response.raw_output_contents), response.outputs[0].HasField("contents"))
    """) == ("hp2", "1", "r-7", [("y", "FP32", [3, 1], [[2.5], [3.0], [4.5]])], 1, False)


def test_infer_several_inputs_and_the_outputs_asked_for(server: ServerProcess) -> None:
    assert _client(server, """
        a = np.array([[1, 2], [3, 4], [0.5, 0]], np.float32)
        b = np.array([10, -20, 0], np.int64)
        s = np.array(["h\\u00e9".encode(), b"", b"\\xff\\x00"], dtype=np.object_)
        asked = [triton.InferRequestedOutput(n) for n in ("text", "total", "positive")]
        result = outputs(client.infer("multi", [tensor("a", a, "FP32"), tensor("b", b, "INT64"),
                                                tensor("s", s, "BYTES")], outputs=asked))
    """) == [("text", "BYTES", [3], ["h\u00e9".encode(), b"", b"\xff\x00"]),
             ("total", "FP32", [3], [13.0, -13.0, 0.5]),
             ("positive", "BOOL", [3], [True, False, False])]


def test_infer_every_output_when_none_is_asked_for(server: ServerProcess) -> None:
    assert _client(server, """
        result = [name for name, *_ in outputs(client.infer("multi", [
            tensor("a", np.zeros((1, 2), np.float32), "FP32"),
            tensor("b", np.array([1], np.int64), "INT64"),
            tensor("s", np.array([b"q"], dtype=np.object_), "BYTES")]))]
    """) == ["positive", "s_bytes", "text", "total"]


@pytest.mark.parametrize(("signature", "datatype", "array", "values"), [
    ("float16", "FP16", "np.array([[0.5, -1.0], [65504, 0]], np.float16)",
     [[0.5, -1.0], [65504.0, 0.0]]),
    ("float64", "FP64", "np.array([0.1, 1e300])", [0.1, 1e300]),
    ("int8", "INT8", "np.array([-128, 127], np.int8)", [-128, 127]),
    ("uint16", "UINT16", "np.array([0, 65535], np.uint16)", [0, 65535]),
    ("uint64", "UINT64", "np.array([(1 << 64) - 1], np.uint64)", [(1 << 64) - 1]),
    ("int32", "INT32", "np.array([[-7], [2**31 - 1]], np.int32)", [[-7], [2**31 - 1]]),
    ("bool", "BOOL", "np.array([[True, False, True]])", [[True, False, True]]),
    ("string", "BYTES", 'np.array([b"\\x00\\xff", b"ok"], dtype=np.object_)',
     [b"\x00\xff", b"ok"]),
])
def test_datatypes_round_trip(server: ServerProcess, signature: str, datatype: str,
                              array: str, values: list[Any]) -> None:
    assert _client(server, f"""
        x = {array}
        result = outputs(client.infer(
            "dtypes", [tensor("x", x, "{datatype}")],
            outputs=[triton.InferRequestedOutput("identity")],
            parameters={{"signature_name": "{signature}"}}))
    """) == [("identity", datatype, [len(values), *([len(values[0])] if isinstance(
        values[0], list) else [])], values)]


def test_typed_contents(server: ServerProcess) -> None:
    """tritonclient sends raw contents only: the typed ones go through its stub."""
    assert _client(server, """
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        request = service_pb2.ModelInferRequest(model_name="multi", id="typed")
        a = request.inputs.add(name="a", datatype="FP32", shape=[2, 2])
        a.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.5])
        b = request.inputs.add(name="b", datatype="INT64", shape=[2])
        b.contents.int64_contents.extend([-1, 5])
        s = request.inputs.add(name="s", datatype="BYTES", shape=[2])
        s.contents.bytes_contents.extend([b"ab", b"\\xff"])
        request.outputs.add(name="total")
        request.outputs.add(name="s_bytes")
        with grpc.insecure_channel(sys.argv[1]) as channel:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        result = (response.id, [(o.name, o.datatype, list(o.shape)) for o in response.outputs],
                  list(response.raw_output_contents))
    """) == ("typed", [("total", "FP32", [2]), ("s_bytes", "BYTES", [2])],
             [b"\x00\x00\x00@\x00\x00HA",  # 2.0 and 12.5, little-endian float32
              b"\x02\x00\x00\x00ab\x01\x00\x00\x00\xff"])


def test_async_infer(server: ServerProcess) -> None:
    assert _client(server, """
        import queue

        answers = queue.Queue()
        x = np.array([[1.0], [2.0]], np.float32)
        for i in range(4):
            client.async_infer("hp2", [tensor("x", x * i, "FP32")],
                               lambda result, error: answers.put((result, error)),
                               request_id=str(i))
        result = []
        for _ in range(4):
            r, e = answers.get(timeout=120)  # a lost answer fails the child, not the run
            result.append((e, r.get_response().id, r.as_numpy("y").tolist()))
        result.sort(key=lambda answer: answer[1])
    """) == [(None, str(i), [[i * 0.5 + 2], [2 * i * 0.5 + 2]]) for i in range(4)]


def test_errors(server: ServerProcess) -> None:
    assert _client(server, """
        x = np.array([[1.0], [2.0]], np.float32)
        result = [
            error(lambda: client.infer("nope", [tensor("x", x, "FP32")])),
            error(lambda: client.infer("hp2", [tensor("x", x, "FP32")], model_version="4")),
            error(lambda: client.infer("hp2", [tensor("x", x, "FP32")], model_version="v1")),
            error(lambda: client.infer("hp2", [tensor("x", x.astype(np.float64), "FP64")])),
            error(lambda: client.infer("hp2", [tensor("z", x, "FP32")])),
            error(lambda: client.infer("hp2", [tensor("x", x, "FP32")],
                                       outputs=[triton.InferRequestedOutput("q")])),
            error(lambda: client.infer("hp2", [tensor("x", x, "FP32")],
                                       parameters={"signature_name": "other"})),
            error(lambda: client.infer("hp2", [tensor("x", x, "FP32")],
                                       outputs=[triton.InferRequestedOutput("y", class_count=2)])),
            error(lambda: client.get_model_metadata("nope")),
            error(lambda: client.get_model_metadata("dtypes")),
            error(lambda: client.get_inference_statistics()),
            client.is_server_live(),
        ]
    """) == [
        ("StatusCode.NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ("StatusCode.NOT_FOUND", "Servable not found for request: Specific(hp2, 4)"),
        ("StatusCode.INVALID_ARGUMENT", "Failed to convert version: v1 to numeric."),
        ("StatusCode.INVALID_ARGUMENT",
         "Input 'x' has datatype FP64, but signature 'serving_default' expects FP32"),
        ("StatusCode.INVALID_ARGUMENT",
         "Input 'z' is not an input of signature 'serving_default' (its inputs: x)"),
        ("StatusCode.INVALID_ARGUMENT",
         "Output 'q' is not an output of signature 'serving_default' (its outputs: y)"),
        ("StatusCode.FAILED_PRECONDITION", 'Serving signature key "other" not found.'),
        ("StatusCode.INVALID_ARGUMENT",
         "Parameter 'classification' of output 'y' is not supported: this server does not "
         "serve the classification extension"),
        ("StatusCode.NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ("StatusCode.FAILED_PRECONDITION", 'Serving signature key "serving_default" not found.'),
        ("StatusCode.UNIMPLEMENTED", "Method not found!"),
        True,
    ]


def _metrics(server: ServerProcess, model: str) -> dict[str, float]:
    """The ModelInfer metrics of ``model``: its request counts by status, and the sample counts
    of its request and runtime latencies."""
    status, _, body = server.request("GET", METRICS_PATH)
    assert status == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model_name") != model:
                continue
            if family.name == ":tensorflow:serving:request_count":
                values[labels["status"]] = sample.value
            elif (sample.name == ":tensorflow:serving:request_latency_count"
                  and labels["API"] == "ModelInfer" and labels["entrypoint"] == "GRPC"):
                values["request_latency"] = sample.value
            elif (sample.name == ":tensorflow:serving:runtime_latency_count"
                  and labels["API"] == "ModelInfer"):
                values["runtime_latency"] = sample.value
    return values


def test_model_infer_is_counted(server: ServerProcess) -> None:
    before = _metrics(server, "multi")
    assert _client(server, """
        a = tensor("a", np.zeros((1, 2), np.float32), "FP32")
        b = tensor("b", np.array([1], np.int64), "INT64")
        s = tensor("s", np.array([b"q"], dtype=np.object_), "BYTES")
        result = [len(outputs(client.infer("multi", [a, b, s]))),
                  error(lambda: client.infer("multi", [a, b]))[0],
                  client.get_model_metadata("multi").name]
    """) == [4, "StatusCode.INVALID_ARGUMENT", "multi"]
    after = _metrics(server, "multi")
    assert {k: after[k] - before.get(k, 0) for k in after} == {
        "OK": 1, "INVALID_ARGUMENT": 1, "request_latency": 1, "runtime_latency": 1}


def test_message_size_limits(server: ServerProcess) -> None:
    """Predict's limits: gRPC lets through up to twice the flag, the service refuses beyond it,
    in and out (the sizes are those of the messages the child builds)."""
    sizes, errors, small = _client(server, """
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        def request(elements):
            r = service_pb2.ModelInferRequest(model_name="dtypes")
            r.parameters["signature_name"].string_param = "float32"
            r.inputs.add(name="x", datatype="FP32", shape=[elements])
            r.outputs.add(name="concat")
            r.raw_input_contents.append(np.ones(elements, "<f4").tobytes())
            return r

        response = service_pb2.ModelInferResponse(model_name="dtypes", model_version="1")
        response.outputs.add(name="concat", datatype="FP32", shape=[300_000])
        response.raw_output_contents.append(np.ones(300_000, "<f4").tobytes())
        errors = []
        with grpc.insecure_channel(sys.argv[1]) as channel:
            infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
            # 1.2 MB in; 0.6 MB in and 1.2 MB out
            for r in (request(300_000), request(150_000)):
                try:
                    infer(r)
                except grpc.RpcError as e:
                    errors.append((str(e.code()), e.details()))
            small = list(infer(request(1000)).outputs[0].shape)
        result = ([request(300_000).ByteSize(), response.ByteSize()], errors, small)
    """)
    flag = f"{MAX_MESSAGE_BYTES} bytes (flag --grpc_max_message_bytes)"
    assert sizes[0] > MAX_MESSAGE_BYTES and sizes[1] > MAX_MESSAGE_BYTES
    assert errors == [
        ("StatusCode.RESOURCE_EXHAUSTED",
         f"Request message of {sizes[0]} bytes exceeds the maximum of {flag}"),
        ("StatusCode.RESOURCE_EXHAUSTED",
         f"Response message of {sizes[1]} bytes exceeds the maximum of {flag}")]
    assert small == [2000]


# --- batching ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairing_server(tmp_path_factory: pytest.TempPathFactory,
                   exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    """Batches of exactly two rows that wait for their second row for as long as a request may
    (ten minutes): a one-row request is answered only once another joins its queue."""
    root = tmp_path_factory.mktemp("v2_grpc_batching")
    shutil.copytree(exported_models["tf2"], root / "hp2" / "1")
    export_models.export_multi_io(str(root / "multi" / "1"))
    config = _config(root, ("hp2", "multi"))
    (root / "batching.txt").write_text("max_batch_size { value: 2 }\n"
                                       "batch_timeout_micros { value: 600000000 }\n"
                                       "max_enqueued_batches { value: 100 }\n"
                                       "num_batch_threads { value: 1 }\n")
    with ServerProcess([f"--model_config_file={config}", "--enable_batching",
                        f"--batching_parameters_file={root / 'batching.txt'}",
                        "--rest_api_timeout_in_ms=600000"]) as s:
        yield s


def test_a_v2_grpc_and_a_v1_request_complete_one_batch(pairing_server: ServerProcess) -> None:
    """Each alone would wait ten minutes for a second row: they answer because they share the
    queue, whichever comes first."""
    with ThreadPoolExecutor(2) as pool:
        v2 = pool.submit(_client, pairing_server, """
            result = outputs(client.infer("hp2", [tensor("x", np.array([4.0], np.float32),
                                                         "FP32")]))
        """)
        v1 = pool.submit(pairing_server.json, "POST", "/v1/models/hp2:predict",
                         {"instances": [6.0]})
        assert v2.result() == [("y", "FP32", [1], [4.0])]
        assert v1.result() == (200, {"predictions": [5.0]})


def test_a_v2_grpc_request_for_some_outputs_still_joins_the_batch(
        pairing_server: ServerProcess) -> None:
    v1_body = {"instances": [{"a": [10.0, 20.0], "b": -1, "s": "v1"}]}
    with ThreadPoolExecutor(2) as pool:
        v2 = pool.submit(_client, pairing_server, """
            result = outputs(client.infer("multi", [
                tensor("a", np.array([[1, 2]], np.float32), "FP32"),
                tensor("b", np.array([3], np.int64), "INT64"),
                tensor("s", np.array([b"v2"], dtype=np.object_), "BYTES")],
                outputs=[triton.InferRequestedOutput("total")]))
        """)
        v1 = pool.submit(pairing_server.json, "POST", "/v1/models/multi:predict", v1_body)
        assert v2.result() == [("total", "FP32", [1], [6.0])]
        assert v1.result() == (200, {"predictions": [
            {"positive": False, "s_bytes": {"b64": "djE="}, "text": "v1", "total": 29.0}]})



def test_reflection_describes_the_service(server: ServerProcess) -> None:
    request_cls = protos.message_class("grpc.reflection.v1.ServerReflectionRequest")
    response_cls = protos.message_class("grpc.reflection.v1.ServerReflectionResponse")
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString)
        listed, by_symbol = list(info(iter([
            request_cls(list_services=""),
            request_cls(file_containing_symbol="inference.GRPCInferenceService")]), timeout=60))
    assert "inference.GRPCInferenceService" in {
        s.name for s in listed.list_services_response.service}
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in by_symbol.file_descriptor_response.file_descriptor_proto]
    assert [f.name for f in files] == ["grpc_service.proto", "model_config.proto"]
    assert files[0].service[0].name == "GRPCInferenceService"
