"""``python -m bench client``: client CPU per predict, ``tfsfast.client`` against the usual clients.

One tfsfast server (``python -m tfsfast``, half_plus_two as ``_common.model_base_path`` finds
it) answers the same request, x = [[2.0]] float32, from each client in turn; every client runs
in a process of its own and calls predict ``--requests`` times in a loop on one kept-alive
connection (after ``--warmup`` calls), and the figure is that process's CPU time per request
(``time.process_time``: every thread of the client, grpcio's included; the server's CPU is not
counted):

* ``tfsfast_msgpack``: ``tfsfast.client.RestClient``, msgpack tensor maps (its default).
* ``tfsfast_json``: ``RestClient(wire_format="json")``.
* ``tfsfast_grpc``: ``tfsfast.client.GrpcClient``.
* ``requests_json``: a ``requests.Session`` posting TF Serving's JSON (``{"inputs": {"x":
  [[2.0]]}}`` from ``array.tolist()``), the answer read back with ``np.asarray``.
* ``tfserving_api_grpc``: ``tensorflow-serving-api``'s ``PredictionServiceStub``, the request
  built with ``tf.make_tensor_proto`` and the answer read with ``tf.make_ndarray``, as TF
  Serving's examples write it.

Each client's answer is checked (3.0) before it is timed. The tracked ratios are
``tfsfast_msgpack``'s CPU per request over each baseline's: ``ratio_to_requests_json`` and
``ratio_to_tfserving_api_grpc`` (target ≤ 0.2 each). ``--rounds N`` runs the clients in turn N
times and keeps each one's lowest figure. The last line is a JSON object with every figure.
Each line shows the hypervisor's steal time during its window (``bench._common.StealMeter``).

Options: ``--requests N`` (default 3000), ``--warmup N`` (300), ``--rounds N`` (1),
``--only a,b``. ``python -m bench.client run NAME REST_PORT GRPC_PORT REQUESTS WARMUP`` runs
one client and prints its JSON figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._common import REPO, StealMeter, model_base_path

MODEL = "half_plus_two"
CLIENTS = ("tfsfast_msgpack", "tfsfast_json", "tfsfast_grpc", "requests_json",
           "tfserving_api_grpc")


# --- the clients (each in its own process) --------------------------------------------------


def tfsfast_client(name: str, rest: str, grpc_target: str) -> Callable[[], float]:
    import numpy as np

    from tfsfast.client import GrpcClient, RestClient

    x = np.array([[2.0]], dtype=np.float32)
    client = (GrpcClient(grpc_target) if name == "tfsfast_grpc" else
              RestClient(rest, wire_format=name.removeprefix("tfsfast_")))

    def call() -> float:
        return float(client.predict(MODEL, {"x": x})[0, 0])

    return call


def requests_json(rest: str) -> Callable[[], float]:
    import numpy as np
    import requests

    x = np.array([[2.0]], dtype=np.float32)
    session = requests.Session()
    url = f"http://{rest}/v1/models/{MODEL}:predict"

    def call() -> float:
        response = session.post(url, json={"inputs": {"x": x.tolist()}}, timeout=30)
        response.raise_for_status()
        return float(np.asarray(response.json()["outputs"], dtype=np.float32)[0, 0])

    return call


def tfserving_api_grpc(grpc_target: str) -> Callable[[], float]:
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    x = np.array([[2.0]], dtype=np.float32)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_target))

    def call() -> float:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        response = stub.Predict(request, timeout=30)
        return float(tf.make_ndarray(response.outputs["y"])[0, 0])

    return call


def run_client(name: str, rest: str, grpc_target: str, requests: int, warmup: int) -> dict:
    """Times ``requests`` calls of client ``name`` in this process: CPU and wall µs each."""
    if name.startswith("tfsfast_"):
        call = tfsfast_client(name, rest, grpc_target)
    elif name == "requests_json":
        call = requests_json(rest)
    else:
        call = tfserving_api_grpc(grpc_target)
    answer = call()
    if answer != 3.0:
        raise SystemExit(f"{name}: half_plus_two(2.0) answered {answer}, not 3.0")
    for _ in range(warmup):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_request": round(cpu / requests * 1e6, 2),
            "wall_us_per_request": round(wall / requests * 1e6, 2)}


# --- the run ----------------------------------------------------------------------------------


def measure(name: str, rest_port: int, grpc_port: int, requests: int, warmup: int) -> dict:
    steal = StealMeter()
    steal.start()
    done = subprocess.run(
        [sys.executable, "-m", "bench.client", "run", name, f"localhost:{rest_port}",
         f"localhost:{grpc_port}", str(requests), str(warmup)],
        cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"client {name} failed:\n{done.stderr}")
    result = json.loads(done.stdout.splitlines()[-1])
    result["steal_percent"] = steal.percent()
    return result


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "run":
        name, rest, grpc_target, requests, warmup = argv[1:6]
        print(json.dumps(run_client(name, rest, grpc_target, int(requests), int(warmup))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench client")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    names = [n for n in CLIENTS if not args.only or n in args.only.split(",")]

    from tfsfast.testing.server_process import ServerProcess

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = model_base_path(Path(tmp))
        with ServerProcess([f"--model_name={MODEL}", f"--model_base_path={base}"]) as server:
            for round_ in range(args.rounds):
                for name in names:
                    r = measure(name, server.rest_port, server.grpc_port, args.requests,
                                args.warmup)
                    best = results.get(name)
                    if best is None or r["cpu_us_per_request"] < best["cpu_us_per_request"]:
                        results[name] = r
                    prefix = f"round {round_ + 1} " if args.rounds > 1 else ""
                    print(f"{prefix}{name:20s} client CPU {r['cpu_us_per_request']:9.1f} µs/req"
                          f"  wall {r['wall_us_per_request']:9.1f} µs/req  steal "
                          f"{r['steal_percent']}%", flush=True)

    def ratio(baseline: str) -> float:
        if "tfsfast_msgpack" not in results or baseline not in results:
            return float("nan")
        return round(results["tfsfast_msgpack"]["cpu_us_per_request"]
                     / results[baseline]["cpu_us_per_request"], 3)

    summary = {"ratio_to_requests_json": ratio("requests_json"),
               "ratio_to_tfserving_api_grpc": ratio("tfserving_api_grpc"),
               "requests": args.requests, "rounds": args.rounds, "results": results}
    print(f"tfsfast.client msgpack CPU per request: {summary['ratio_to_requests_json']} of "
          f"requests/JSON, {summary['ratio_to_tfserving_api_grpc']} of tensorflow-serving-api "
          "(target <= 0.2 each)")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
