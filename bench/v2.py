"""``python -m bench v2``: the Open Inference Protocol (V2) against TF Serving's API on one server.

One tfsfast server runs half_plus_two (``saved_model_half_plus_two_cpu`` from
``../shared/testdata``, or the same model exported with TensorFlow when that is absent) as model
``m``, pinned to core 1; the load generators run on core 0. Each ratio compares the same request
made two ways, in paired bursts (``bench._common.paired_bursts``: ``--bursts`` alternating pairs
of ``--duration`` seconds, the median of their requests/s ratios), every answer checked first
and after the load:

* ``v2_json_over_v1_predict_c32``: ``POST /v2/models/m/infer`` with
  ``{"inputs":[{"name":"x","shape":[3,1],"datatype":"FP32","data":[1,2,5]}]}`` over ``POST
  /v1/models/m:predict`` with the body ``bench http`` sends (``{"instances": [[1.0],[2.0],
  [5.0]]}``), ``wrk -t1`` at 32 connections. Target >= 0.9.
* ``v2_binary_over_msgpack_4mib``: a 4 MiB float32 input of shape [1048576, 1] as V2 binary
  tensor data (``Inference-Header-Content-Length``, the output asked for as binary) over the
  same tensor as a msgpack tensor map to ``/v1`` predict (``Content-Type:
  application/msgpack``, answered in msgpack), ``wrk`` at ``--large-connections`` (4). Target
  >= 0.9.
* ``v2_grpc_over_predict``: gRPC ModelInfer of the half_plus_two request (x in
  ``raw_input_contents``) over gRPC Predict of it (x as ``tensor_content``), ``h2load`` as
  ``bench grpc`` drives Predict (4 connections, 8 streams each). Target >= 0.9.

Then Triton's ``perf_analyzer`` as the client (``tfsfast.testing.perf_analyzer``; skipped, with
the reason printed, when it cannot run here): throughput and p50/p99 at concurrency 32 over V2
HTTP, V2 gRPC and TF Serving's gRPC API (``--service-kind=tfserving``), measurement windows of
``--duration`` seconds. Figures only, no target: its client costs differ per protocol.

The last line is a JSON object with every figure, the ratios, ``targets`` and ``targets_met``.
Each line shows the hypervisor's steal time during its bursts (``bench._common.StealMeter``).

Options: ``--duration S`` (3), ``--bursts N`` (5), ``--large-connections N`` (4), ``--only
json,binary,grpc,perf_analyzer``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    REPO,
    Burst,
    StealMeter,
    free_port,
    model_base_path,
    paired_bursts,
    pin,
)
from bench.grpc import ensure_h2load, run_h2load
from bench.http import BODY as V1_JSON
from bench.http import Server, ensure_wrk, run_wrk

MODEL = "m"
V2_JSON = b'{"inputs":[{"name":"x","shape":[3,1],"datatype":"FP32","data":[1,2,5]}]}'
X = np.array([[1.0], [2.0], [5.0]], np.float32)
LARGE_ROWS = 1 << 20  # 4 MiB of float32
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
TARGETS = {"v2_json_over_v1_predict_c32": 0.9, "v2_binary_over_msgpack_4mib": 0.9,
           "v2_grpc_over_predict": 0.9}
SECTIONS = ("json", "binary", "grpc", "perf_analyzer")


def _half_plus_two(x: np.ndarray) -> np.ndarray:
    return (x * np.float32(0.5) + np.float32(2.0)).astype(np.float32)


# --- the requests, and the check of their answers --------------------------------------------


class RestRequest:
    """A POST to the server's REST port: its body, headers, and the check of its answer."""

    def __init__(self, path: str, body: bytes, headers: dict[str, str],
                 check: Callable[[bytes, dict[str, str]], None]) -> None:
        self.path, self.body, self.headers, self.check_answer = path, body, headers, check

    def check(self, port: int) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{self.path}", data=self.body,
                                         headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            self.check_answer(response.read(), dict(response.headers))

    def wrk_script(self, workdir: Path, name: str) -> Path:
        """A wrk script posting this request (the body read from a file: it may be binary)."""
        body = workdir / f"{name}.body"
        body.write_bytes(self.body)
        headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in self.headers.items())
        script = workdir / f"{name}.lua"
        script.write_text(f'wrk.method = "POST"\nlocal f = io.open("{body}", "rb")\n'
                          f"wrk.body = f:read(\"*a\")\nf:close()\n{headers}")
        return script


def _expect(got: Any, want: Any, what: str) -> None:
    if not np.array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32)):
        raise RuntimeError(f"{what} answered {str(got)[:200]}, not {str(want)[:200]}")


def json_requests() -> tuple[RestRequest, RestRequest]:
    """The V2 JSON infer and the ``/v1`` JSON predict of x = [[1], [2], [5]]."""
    want = _half_plus_two(X)
    v2 = RestRequest(f"/v2/models/{MODEL}/infer", V2_JSON, {"Content-Type": "application/json"},
                     lambda body, _: _expect(json.loads(body)["outputs"][0]["data"],
                                             want.ravel(), "V2 JSON infer"))
    v1 = RestRequest(f"/v1/models/{MODEL}:predict", V1_JSON,
                     {"Content-Type": "application/json"},
                     lambda body, _: _expect(json.loads(body)["predictions"], want,
                                             "/v1 JSON predict"))
    return v2, v1


def large_requests() -> tuple[RestRequest, RestRequest]:
    """The V2 binary infer and the ``/v1`` msgpack predict of a [1048576, 1] float32 tensor."""
    import msgpack

    x = (np.arange(LARGE_ROWS, dtype=np.float32) % 1000).reshape(LARGE_ROWS, 1)
    want = _half_plus_two(x)
    data = x.astype("<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": "x", "shape": [LARGE_ROWS, 1], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()

    def check_v2(body: bytes, headers: dict[str, str]) -> None:
        length = int(headers["Inference-Header-Content-Length"])
        output = json.loads(body[:length])["outputs"][0]
        _expect(np.frombuffer(body[length:], "<f4").reshape(output["shape"]), want,
                "V2 binary infer")

    def check_msgpack(body: bytes, _: dict[str, str]) -> None:
        tensor = msgpack.unpackb(body)["outputs"]
        _expect(np.frombuffer(tensor["data"], "<f4").reshape(tensor["shape"]), want,
                "/v1 msgpack predict")

    v2 = RestRequest(f"/v2/models/{MODEL}/infer", header + data,
                     {"Content-Type": "application/octet-stream",
                      "Inference-Header-Content-Length": str(len(header))}, check_v2)
    v1 = RestRequest(f"/v1/models/{MODEL}:predict",
                     msgpack.packb({"inputs": {"x": {"dtype": "float32",
                                                     "shape": [LARGE_ROWS, 1], "data": data}}}),
                     {"Content-Type": "application/msgpack"}, check_msgpack)
    return v2, v1


class GrpcRequest:
    """A unary call on the server's gRPC port: the serialized request, and the check of its
    answer (the response bytes)."""

    def __init__(self, method: str, data: bytes, check: Callable[[bytes], None]) -> None:
        self.method, self.data, self.check_answer = method, data, check

    def check(self, port: int) -> None:
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            self.check_answer(channel.unary_unary(self.method)(self.data, timeout=60))

    def framed(self, workdir: Path, name: str) -> Path:
        path = workdir / f"{name}.bin"
        path.write_bytes(b"\x00" + len(self.data).to_bytes(4, "big") + self.data)
        return path


def grpc_requests() -> tuple[GrpcRequest, GrpcRequest]:
    """ModelInfer with ``raw_input_contents`` and Predict with ``tensor_content`` of x."""
    from tensorflow_serving.apis import predict_pb2

    from tfsfast.server.v2.grpc_protocol import message_class

    want = _half_plus_two(X)
    infer = message_class("ModelInferRequest")(model_name=MODEL)
    infer.inputs.add(name="x", datatype="FP32", shape=list(X.shape))
    infer.raw_input_contents.append(X.astype("<f4").tobytes())
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = MODEL
    tensor = predict.inputs["x"]
    tensor.dtype = 1  # DT_FLOAT
    for size in X.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = X.astype("<f4").tobytes()

    def check_infer(data: bytes) -> None:
        response = message_class("ModelInferResponse").FromString(data)
        _expect(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(
            list(response.outputs[0].shape)), want, "gRPC ModelInfer")

    def check_predict(data: bytes) -> None:
        y = predict_pb2.PredictResponse.FromString(data).outputs["y"]
        _expect(np.array(y.float_val, np.float32).reshape([d.size for d in
                                                          y.tensor_shape.dim]), want,
                "gRPC Predict")

    return (GrpcRequest(MODEL_INFER, infer.SerializeToString(), check_infer),
            GrpcRequest(PREDICT, predict.SerializeToString(), check_predict))


# --- measuring ----------------------------------------------------------------------------------


def _median(bursts: list[Burst]) -> dict[str, Any]:
    """The median of each figure over the bursts (steal: the worst burst's)."""
    steal = [b["steal_percent"] for b in bursts if b.get("steal_percent") is not None]
    return {"rps": round(statistics.median(b["rps"] for b in bursts), 1),
            "p50_ms": round(statistics.median(b["p50_ms"] for b in bursts), 3),
            "p99_ms": round(statistics.median(b["p99_ms"] for b in bursts), 3),
            "steal_percent": max(steal) if steal else None}


def _checked(burst: Burst, what: str) -> Burst:
    if burst.get("non_2xx") or burst.get("socket_errors") or burst.get("failed"):
        raise RuntimeError(f"{what}: requests failed during the load: {burst}")
    return burst


def _report(results: dict[str, Any], ratios: dict[str, float], key: str, ratio: float,
            names: tuple[str, str], sides: tuple[list[Burst], list[Burst]]) -> None:
    ratios[key] = round(ratio, 3)
    for name, bursts in zip(names, sides, strict=True):
        results[name] = _median(bursts)
        r = results[name]
        print(f"{name:24s} {r['rps']:>10.1f} req/s  p50 {r['p50_ms']:8.3f} ms  p99 "
              f"{r['p99_ms']:8.3f} ms  steal {r['steal_percent']}%", flush=True)
    print(f"{key}: median of {len(sides[0])} paired bursts {ratio:.3f} "
          f"(target >= {TARGETS[key]})", flush=True)


def measure_rest(port: int, pair: tuple[RestRequest, RestRequest], connections: int,
                 duration: float, bursts: int, workdir: Path, names: tuple[str, str]
                 ) -> tuple[float, list[Burst], list[Burst]]:
    v2, v1 = pair
    url = f"http://127.0.0.1:{port}"
    scripts = [request.wrk_script(workdir, name) for request, name in zip(pair, names,
                                                                           strict=True)]
    for request in pair:
        request.check(port)
    for request, script in zip(pair, scripts, strict=True):
        run_wrk(url + request.path, min(connections, 8), 1.0, script)  # warm up
    result = paired_bursts(
        lambda: _checked(run_wrk(url + v2.path, connections, duration, scripts[0]), names[0]),
        lambda: _checked(run_wrk(url + v1.path, connections, duration, scripts[1]), names[1]),
        bursts)
    for request in pair:
        request.check(port)
    return result


def measure_grpc(port: int, pair: tuple[GrpcRequest, GrpcRequest], duration: float,
                 bursts: int, workdir: Path, names: tuple[str, str]
                 ) -> tuple[float, list[Burst], list[Burst]]:
    bodies = [request.framed(workdir, name) for request, name in zip(pair, names, strict=True)]

    def burst(request: GrpcRequest, body: Path, name: str, seconds: float) -> Burst:
        steal = StealMeter()
        steal.start()
        result: Burst = run_h2load(port, body, seconds, 4, 8, workdir, request.method)
        result["steal_percent"] = steal.percent()
        return _checked(result, name)

    for request in pair:
        request.check(port)
    for request, body, name in zip(pair, bodies, names, strict=True):
        burst(request, body, name, 1.0)  # warm up
    result = paired_bursts(lambda: burst(pair[0], bodies[0], names[0], duration),
                           lambda: burst(pair[1], bodies[1], names[1], duration), bursts)
    for request in pair:
        request.check(port)
    return result


def measure_perf_analyzer(rest_port: int, grpc_port: int, duration: float
                          ) -> dict[str, Any]:
    """perf_analyzer's figures at concurrency 32 over each API, or the reason it did not run."""
    from tfsfast.testing import perf_analyzer

    try:
        perf_analyzer.binary()
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        print(f"perf_analyzer skipped: {e}", flush=True)
        return {"skipped": str(e)}
    load = ["-m", MODEL, "--concurrency-range", "32", "--shape", "x:3,1",
            "--measurement-interval", str(int(duration * 1000)), "--stability-percentage", "20"]
    apis = {
        "v2_http": ["-i", "http", "-u", f"127.0.0.1:{rest_port}"],
        "v2_grpc": ["-i", "grpc", "-u", f"127.0.0.1:{grpc_port}"],
        "tfserving_grpc": ["--service-kind", "tfserving", "-i", "grpc",
                           "-u", f"127.0.0.1:{grpc_port}"],
    }
    figures: dict[str, Any] = {}
    for api, endpoint in apis.items():
        report = perf_analyzer.run([*load, *endpoint], prefix=pin(0))
        if report.returncode != 0 or not report.measurements:
            said = (report.stdout + report.stderr).strip().splitlines()
            figures[api] = {"failed": said[-1] if said else f"exit {report.returncode}"}
            print(f"perf_analyzer {api:16s} failed: {figures[api]['failed']}", flush=True)
            continue
        m = report.measurements[0]
        figures[api] = {"throughput": m.throughput, "p50_ms": m.p50_us / 1000,
                        "p99_ms": m.p99_us / 1000}
        print(f"perf_analyzer {api:16s} {m.throughput:>10.1f} infer/s  p50 "
              f"{m.p50_us / 1000:8.3f} ms  p99 {m.p99_us / 1000:8.3f} ms", flush=True)
    return figures


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench v2")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--large-connections", type=int, default=4)
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    # This process imports TensorFlow for the Predict request: without its start-up chatter.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sections = args.only.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --only {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    ensure_wrk()
    if "grpc" in sections and not ensure_h2load():
        print("h2load is unavailable (apt-get install nghttp2-client): no gRPC ratio",
              flush=True)
        sections.remove("grpc")
    results: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    perf: dict[str, Any] = {}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = model_base_path(workdir)
        port, grpc_port = free_port(), free_port()
        server = Server("tfsfast", [sys.executable, "-m", "tfsfast", f"--model_name={MODEL}",
                                    f"--model_base_path={base}", f"--port={grpc_port}",
                                    f"--rest_api_port={port}"], port, env)
        try:
            server.wait_ready()
            if "json" in sections:
                names = ("v2_json_c32", "v1_predict_json_c32")
                ratio, above, below = measure_rest(port, json_requests(), 32, args.duration,
                                                   args.bursts, workdir, names)
                _report(results, ratios, "v2_json_over_v1_predict_c32", ratio, names,
                        (above, below))
            if "binary" in sections:
                names = ("v2_binary_4mib", "v1_predict_msgpack_4mib")
                ratio, above, below = measure_rest(port, large_requests(),
                                                   args.large_connections, args.duration,
                                                   args.bursts, workdir, names)
                _report(results, ratios, "v2_binary_over_msgpack_4mib", ratio, names,
                        (above, below))
            if "grpc" in sections:
                names = ("grpc_model_infer", "grpc_predict")
                ratio, above, below = measure_grpc(grpc_port, grpc_requests(), args.duration,
                                                   args.bursts, workdir, names)
                _report(results, ratios, "v2_grpc_over_predict", ratio, names, (above, below))
            if "perf_analyzer" in sections:
                perf = measure_perf_analyzer(port, grpc_port, args.duration)
        finally:
            server.stop()
    summary = {
        "results": results,
        **{key: ratios.get(key, float("nan")) for key in TARGETS},
        "perf_analyzer_c32": perf,
        "targets": TARGETS,
        "targets_met": {key: key in ratios and ratios[key] >= target
                        for key, target in TARGETS.items()},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
