"""The manifests' container args start a real server whose ports answer what the manifests ask.

For the Deployment and each KServe runtime: the container's args, with only the paths (volume
mounts, KServe's model directory, ``{{.Name}}``) and the port numbers replaced by test-local ones,
start ``python -m tfsfast`` in place of ``/usr/bin/tensorflow_model_server``. Every probe's path
must then answer 200 on the port the probe names, and a predict must work over REST and gRPC on
the ports the args give those APIs. The Deployment's model config is its ConfigMap's, with the
same path replacement, over the test's exported half_plus_two; the Prometheus page must answer
at the port and path the pod's annotations give.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfsfast.server import model_config as mc
from tfsfast.server import server_options
from tfsfast.testing.server_process import ServerProcess

from .manifests import flag_values

pytestmark = pytest.mark.integration

SERVER_BINARY = "/usr/bin/tensorflow_model_server"
# Where KServe's storage initializer puts the model (its DefaultModelLocalMountPath).
KSERVE_MODEL_DIR = "/mnt/models"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def local_path(value: str, paths: dict[str, Path]) -> str:
    """``value`` with a leading in-pod directory of ``paths`` replaced by its local one."""
    for pod_path, local in paths.items():
        if value == pod_path or value.startswith(pod_path + "/"):
            return str(local) + value[len(pod_path):]
    return value


def localize(arg: str, paths: dict[str, Path], ports: dict[int, int],
             templates: dict[str, str]) -> str:
    """``arg`` with a port flag's number, a leading in-pod path and KServe's placeholders replaced
    by their test-local counterparts; nothing else changes."""
    flag, _, value = arg.partition("=")
    if flag in ("--port", "--rest_api_port"):
        return f"{flag}={ports[int(value)]}"
    for placeholder, replacement in templates.items():
        value = value.replace(placeholder, replacement)
    return f"{flag}={local_path(value, paths)}"


def port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's port, by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


@contextlib.contextmanager
def serve(container: dict[str, Any], paths: dict[str, Path],
          templates: dict[str, str]) -> Iterator[tuple[ServerProcess, dict[int, int]]]:
    """Runs the container's args locally; yields the server and {pod port: local port}."""
    assert container["command"] == [SERVER_BINARY]
    args = container["args"]
    flags = flag_values(args)
    server = ServerProcess([])  # its two free ports stand in for the pod's
    ports = {int(flags["port"]): server.grpc_port, int(flags["rest_api_port"]): server.rest_port}
    local_args = [localize(a, paths, ports, templates) for a in args]
    # Like TF Serving, the server logs an unknown flag and starts anyway: a misspelt flag in a
    # manifest would go unnoticed below.
    parsed = server_options.parse_command_line(local_args)
    assert (parsed.unknown_arguments, parsed.messages, parsed.exit_code) == ((), (), None)
    assert parsed.given == set(flags)
    # The args name both ports themselves (they come after ServerProcess's own, so theirs win).
    server.flags.extend(local_args)
    with server:
        yield server, ports


def check_probes_answer_200(server: ServerProcess, container: dict[str, Any],
                            ports: dict[int, int]) -> None:
    for kind in PROBES:
        probe = container[kind]["httpGet"]
        local = ports[port_number(container, probe["port"])]
        assert local == server.rest_port, f"{kind} probes a port that does not serve HTTP"
        status, _, body = server.request("GET", probe["path"])
        assert (kind, status) == (kind, 200), body


def check_predicts(server: ServerProcess, model: str) -> None:
    assert server.json("POST", f"/v1/models/{model}:predict",
                       {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [2.5, 3.0, 4.5]})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    x = request.inputs["x"]
    x.dtype = 1  # DT_FLOAT
    x.tensor_shape.dim.add().size = 3
    x.float_val.extend([1.0, 2.0, 5.0])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]


def test_deployment_args_serve_its_probes_and_predicts(
        tmp_path: Path, exported_models: dict[str, Path],
        kubernetes_objects: dict[str, dict[str, Any]]) -> None:
    (deployment,) = [o for o in kubernetes_objects.values() if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    configmaps = {o["metadata"]["name"]: o for o in kubernetes_objects.values()
                  if o["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Each volume mount becomes a local directory; a ConfigMap's keys become its files.
    paths = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    for mount in container["volumeMounts"]:
        local = paths[mount["mountPath"]]
        local.mkdir()
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                # Only the in-pod paths in the file change, as in the args.
                for pod_path, local_dir in paths.items():
                    text = text.replace(f'"{pod_path}/', f'"{local_dir}/')
                (local / key).write_text(text)
    config_file = flag_values(container["args"])["model_config_file"]
    config = mc.read_model_server_config(local_path(config_file, paths))
    # The models volume: version 1 of each configured model, where the config says.
    for model in config.model_config_list.config:
        shutil.copytree(exported_models["tf2"], Path(model.base_path) / "1")

    with serve(container, paths, {}) as (server, ports):
        check_probes_answer_200(server, container, ports)
        for model in config.model_config_list.config:
            check_predicts(server, model.name)
            assert server.request("GET", f"/v2/models/{model.name}/ready")[0] == 200
        # Every declared container port is one the args serve.
        assert {p["containerPort"] for p in container["ports"]} == set(ports)
        # Prometheus's pod annotations name the page the args serve.
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert ports[int(annotations["prometheus.io/port"])] == server.rest_port
        status, headers, body = server.request("GET", annotations["prometheus.io/path"])
        assert (status, headers["Content-Type"]) == (200, "text/plain")
        assert b"# TYPE :tensorflow:serving:request_count counter\n" in body


@pytest.mark.parametrize("runtime", ["servingruntime.yaml", "clusterservingruntime.yaml"])
def test_kserve_runtime_args_serve_its_probes_and_predicts(
        runtime: str, tmp_path: Path, exported_models: dict[str, Path],
        kserve_objects: dict[str, dict[str, Any]]) -> None:
    (container,) = kserve_objects[runtime]["spec"]["containers"]
    isvc = kserve_objects["inferenceservice.yaml"]
    # What KServe does: the storage initializer fills /mnt/models and {{.Name}} is the
    # InferenceService's name.
    model_dir = tmp_path / "models"
    shutil.copytree(exported_models["tf2"], model_dir / "1")
    paths = {KSERVE_MODEL_DIR: model_dir}
    name = isvc["metadata"]["name"]

    with serve(container, paths, {"{{.Name}}": name}) as (server, ports):
        check_probes_answer_200(server, container, ports)
        check_predicts(server, name)
        assert {p["containerPort"] for p in container["ports"]} <= set(ports)


def test_localize_replaces_only_paths_ports_and_placeholders() -> None:
    paths = {"/models": Path("/tmp/x/models"), "/etc/tfsfast": Path("/tmp/x/config")}
    ports = {8500: 41000}
    names = {"{{.Name}}": "half-plus-two"}
    assert [localize(a, paths, ports, names) for a in [
        "--port=8500",
        "--model_config_file=/etc/tfsfast/models.config",
        "--model_base_path=/models",
        "--model_base_path=/models_other",
        "--model_name={{.Name}}",
        "--drain_timeout_seconds=30",
    ]] == [
        "--port=41000",
        "--model_config_file=/tmp/x/config/models.config",
        "--model_base_path=/tmp/x/models",
        "--model_base_path=/models_other",
        "--model_name=half-plus-two",
        "--drain_timeout_seconds=30",
    ]
