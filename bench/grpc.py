"""``python -m bench grpc``: gRPC Predict throughput of tfsfast against hand-written servers.

Three servers answer ``tensorflow.serving.PredictionService/Predict`` for half_plus_two
(``saved_model_half_plus_two_cpu`` from ``../shared/testdata``, or the same model exported with
TensorFlow when that is absent), each pinned to one core:

* ``echo``: a grpcio aio servicer that returns one fixed PredictResponse, with no model and no
  tensor conversion: the ceiling of grpcio on this machine.
* ``handwritten``: a grpcio aio servicer as users write it by hand: ``tf.make_ndarray`` on the
  request, a ``tf.compat.v1.Session`` run of the SavedModel, ``tf.make_tensor_proto`` for the
  response.
* ``tfsfast``: ``python -m tfsfast`` with batching off.
* ``tfsfast_metrics``: the same with ``--monitoring_config_file`` serving the Prometheus page
  (``metrics_on_over_off_c32``: its requests/s over ``tfsfast``'s at the default 32 requests in
  flight, target >= 0.97).

The load is closed-loop from a separate process on the other core: ``h2load`` (Debian's
nghttp2-client, installed if missing; its per-request log gives p50/p99) sending the same
serialized PredictRequest on ``--connections`` connections with ``--streams`` requests in flight
on each; ``--client python`` uses a grpcio aio client instead (it saturates before the servers
do on a small machine). Every server's answer is checked with the official stub first (3.0 for
x = 2.0). Besides requests/s and latency, each row shows the server's CPU time per request.

The last line is a JSON object with every figure and the ratios ``ratio_to_handwritten`` and
``ratio_to_echo_ceiling``. Absolute numbers move between runs on shared machines; compare the
ratios. ``python -m bench.grpc serve {echo,handwritten} PORT [MODEL_DIR]`` runs one baseline.

Options: ``--duration S`` (default 5), ``--connections N`` (4), ``--streams N`` (8),
``--rounds N`` (1; the servers take turns, each figure is the best round), ``--client``,
``--only a,b``, ``--tfsfast-args "..."`` (extra tfsfast flags). Each line shows the hypervisor's
steal time during its window (``bench._common.StealMeter``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import MONITORING_CONFIG, REPO, StealMeter, free_port, model_base_path, pin

SERVICE = "tensorflow.serving.PredictionService"
METHOD = f"/{SERVICE}/Predict"
MODEL_NAME = "m"


def predict_request() -> Any:
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    tensor = request.inputs["x"]
    tensor.dtype = 1  # DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 1
    tensor.float_val.append(2.0)
    return request


# --- the baseline servers (run in their own processes) -------------------------------------------


def serve_echo(port: int) -> None:
    """grpcio aio, a fixed PredictResponse: what grpcio costs with no work at all."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    response = predict_pb2.PredictResponse()
    response.model_spec.name = MODEL_NAME
    response.model_spec.signature_name = "serving_default"
    response.model_spec.version.value = 123
    y = response.outputs["y"]
    y.dtype = 1
    y.tensor_shape.dim.add().size = 1
    y.tensor_shape.dim.add().size = 1
    y.float_val.append(3.0)

    class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request: Any, context: Any) -> Any:
            return response

    async def main() -> None:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def serve_handwritten(port: int, export_dir: str) -> None:
    """grpcio aio + a TF session, converting with tf.make_ndarray / tf.make_tensor_proto."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta.signature_def["serving_default"]
    x_name = signature.inputs["x"].name
    y_name = signature.outputs["y"].name

    class HandWritten(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request: Any, context: Any) -> Any:
            x = tf.make_ndarray(request.inputs["x"])
            y = session.run(y_name, {x_name: x})
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.signature_name = "serving_default"
            response.model_spec.version.value = 123
            response.outputs["y"].CopyFrom(tf.make_tensor_proto(y))
            return response

    async def main() -> None:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(HandWritten(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# --- driving a server ----------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.process = subprocess.Popen([*pin(1), *argv], env=env, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the official stub gets 3.0 for 2.0 (a wrong answer is an error)."""
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        deadline = time.monotonic() + timeout
        request = predict_request()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.process.stderr.read().decode()}")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                    answer = list(stub.Predict(request, timeout=5).outputs["y"].float_val)
                if answer != [3.0]:
                    raise RuntimeError(f"{self.name} answered {answer}")
                return
            except grpc.RpcError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def servers(base: Path, workdir: Path, tfsfast_args: Sequence[str] = ()
            ) -> dict[str, list[str]]:
    version_dir = str(next(p for p in sorted(base.iterdir()) if p.name.isdigit()))
    py = sys.executable
    monitoring = workdir / "monitoring_config.txt"
    monitoring.write_text(MONITORING_CONFIG)
    tfsfast = [py, "-m", "tfsfast", f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
               "--port={port}", "--rest_api_port=0", *tfsfast_args]
    return {
        "echo": [py, "-m", "bench.grpc", "serve", "echo", "{port}"],
        "handwritten": [py, "-m", "bench.grpc", "serve", "handwritten", "{port}", version_dir],
        "tfsfast": tfsfast,
        # The page needs the REST port: 0 turns it off, so it gets one of its own.
        "tfsfast_metrics": [*tfsfast, "--rest_api_port={rest_port}",
                            f"--monitoring_config_file={monitoring}"],
    }


def ensure_h2load() -> bool:
    if shutil.which("h2load") is None:
        print("installing h2load (apt-get install nghttp2-client)...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=False,
                       capture_output=True)
    return shutil.which("h2load") is not None


def _percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    if not latencies_ms:
        return float("nan"), float("nan")
    ordered = sorted(latencies_ms)
    return (ordered[len(ordered) // 2], ordered[min(len(ordered) - 1,
                                                    int(len(ordered) * 0.99))])


def run_h2load(port: int, body: Path, duration: float, connections: int, streams: int,
               workdir: Path, method: str = METHOD) -> dict[str, float]:
    """h2load sending ``body`` (a gRPC-framed request) to ``method`` (a gRPC method path).
    h2load sees HTTP statuses only, not gRPC's: check the answers before and after a load."""
    log = workdir / "h2load.log"
    argv = [*pin(0), "h2load", "-D", f"{duration:g}", "-c", str(connections), "-m",
            str(streams), "-t", "1", "-d", str(body), "-H", "content-type: application/grpc",
            "-H", "te: trailers", "--log-file", str(log), f"http://127.0.0.1:{port}{method}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    done = failed = 0
    for line in out.splitlines():
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            done = int(words[words.index("done") - 1])
            failed = int(words[words.index("failed") - 1]) + int(words[words.index("errored") - 1])
    latencies = []
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")
        if status == "200":
            latencies.append(int(micros) / 1000.0)
    p50, p99 = _percentiles(latencies)
    return {"rps": round(done / duration, 1), "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
            "failed": failed}


async def _python_load(port: int, data: bytes, duration: float, concurrency: int
                       ) -> dict[str, float]:
    import grpc

    latencies: list[float] = []
    failed = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        end = time.monotonic() + duration

        async def worker() -> None:
            nonlocal failed
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    await call(data)
                    latencies.append((time.perf_counter() - start) * 1000.0)
                except grpc.RpcError:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.monotonic() - started
    p50, p99 = _percentiles(latencies)
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3), "failed": failed}


def run_python_client(port: int, duration: float, concurrency: int) -> dict[str, float]:
    """The grpcio aio client in its own process, pinned to the load generator's core."""
    argv = [*pin(0), sys.executable, "-m", "bench.grpc", "load", str(port), f"{duration:g}",
            str(concurrency)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench grpc")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--client", choices=["h2load", "python"], default="h2load")
    parser.add_argument("--only", default="")
    parser.add_argument("--tfsfast-args", default="",
                        help="extra tfsfast flags, space-separated (e.g. --grpc_max_threads=2)")
    args = parser.parse_args(argv)
    client = args.client
    if client == "h2load" and not ensure_h2load():
        print("h2load is unavailable; using the grpcio aio client", flush=True)
        client = "python"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = predict_request().SerializeToString()
        body = workdir / "request.bin"
        body.write_bytes(b"\x00" + len(data).to_bytes(4, "big") + data)  # gRPC framing
        table = servers(model_base_path(workdir), workdir, args.tfsfast_args.split())
        names = [n for n in table if not args.only or n in args.only.split(",")]
        for round_ in range(args.rounds):
            for name in names:
                port = free_port()
                argv_ = [a.format(port=port, rest_port=free_port()) for a in table[name]]
                server = Server(name, argv_, port, env)
                try:
                    server.wait_ready()
                    concurrency = args.connections * args.streams
                    steal = StealMeter()
                    if client == "h2load":
                        run_h2load(port, body, 1.0, args.connections, args.streams, workdir)
                        cpu = server.cpu_seconds()
                        steal.start()
                        r = run_h2load(port, body, args.duration, args.connections,
                                       args.streams, workdir)
                    else:
                        run_python_client(port, 1.0, concurrency)
                        cpu = server.cpu_seconds()
                        steal.start()
                        r = run_python_client(port, args.duration, concurrency)
                    cpu = server.cpu_seconds() - cpu
                    r["steal_percent"] = steal.percent()
                    r["server_cpu_us_per_request"] = round(
                        cpu * 1e6 / max(1.0, r["rps"] * args.duration), 1)
                    server.wait_ready()  # still answering correctly after the load
                finally:
                    server.stop()
                best = results.get(name)
                if best is None or r["rps"] > best["rps"]:
                    results[name] = r
                print(f"round {round_ + 1} {name:12s} {r['rps']:>9.1f} req/s  p50 "
                      f"{r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms  server CPU "
                      f"{r['server_cpu_us_per_request']:7.1f} us/req  failed {r['failed']}  steal "
                      f"{r['steal_percent']}%",
                      flush=True)

    def rps(name: str) -> float:
        return results.get(name, {}).get("rps", float("nan"))

    summary = {
        "client": client,
        "in_flight": args.connections * args.streams,
        "results": results,
        "ratio_to_handwritten": round(rps("tfsfast") / rps("handwritten"), 2),
        "ratio_to_echo_ceiling": round(rps("tfsfast") / rps("echo"), 3),
        "metrics_on_over_off_c32": round(rps("tfsfast_metrics") / rps("tfsfast"), 3),
    }
    print(json.dumps(summary))
    return 0


def _entry(argv: list[str]) -> int:
    """``serve echo|handwritten PORT [DIR]`` and ``load PORT SECONDS CONCURRENCY`` subcommands."""
    if argv and argv[0] == "serve":
        if argv[1] == "echo":
            serve_echo(int(argv[2]))
        else:
            serve_handwritten(int(argv[2]), argv[3])
        return 0
    if argv and argv[0] == "load":
        data = predict_request().SerializeToString()
        result = asyncio.run(_python_load(int(argv[1]), data, float(argv[2]), int(argv[3])))
        print(json.dumps(result))
        return 0
    return main(argv)


if __name__ == "__main__":
    sys.exit(_entry(sys.argv[1:]))
