"""deploy/kserve: the runtimes and the InferenceService load into the KServe SDK's models whole,
and say what KServe's own TF Serving runtime says.

The SDK's ``ApiClient.deserialize`` walks a model's ``openapi_types`` and ``attribute_map``, but
resolves type names in ``kserve.models`` only, so it fails on the Kubernetes types every object
holds (``V1ObjectMeta``, ``V1Container``, ...), and it drops keys a model does not declare.
:func:`deserialize` is the same walk with both model packages, refusing undeclared keys; the
round trip through the SDK's ``sanitize_for_serialization`` must give back the YAML unchanged
(but for the empty string the SDK puts in the predictor model's ``name``, see :func:`differences`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import kserve
import kubernetes.client.models as kubernetes_models
import pytest
import yaml

from tfsfast.server.server import EXIT_GRACE_SECONDS

from .manifests import KSERVE, KUSTOMIZATION, flag_values

# config/runtimes/kserve-tensorflow-serving.yaml in KServe: the arguments its TF Serving runtime
# gives /usr/bin/tensorflow_model_server, in its order.
KSERVE_TF_SERVING_ARGS = [
    "--model_name={{.Name}}",
    "--port=9000",
    "--rest_api_port=8080",
    "--model_base_path=/mnt/models",
    "--rest_api_timeout_in_ms=60000",
]
SERVER_BINARY = "/usr/bin/tensorflow_model_server"
# KServe looks the model server container up by this name.
KSERVE_CONTAINER = "kserve-container"
# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30
RUNTIMES = ("servingruntime.yaml", "clusterservingruntime.yaml")
SDK_MODELS = {
    "servingruntime.yaml": kserve.V1alpha1ServingRuntime,
    "clusterservingruntime.yaml": kserve.V1alpha1ClusterServingRuntime,
    "inferenceservice.yaml": kserve.V1beta1InferenceService,
}

# Container types as the two generators spell them: KServe's list[X] and dict(str, X), the
# Kubernetes client's List[X] and Dict[str, X].
_LIST = re.compile(r"(?:list|List)\[(.+)\]")
_DICT = re.compile(r"dict\(str, (.+)\)|Dict\[str, (.+)\]")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (float, int), "bool": (bool,)}


def deserialize(data: Any, type_name: str, where: str) -> Any:
    """``data`` (parsed YAML) as an instance of the generated model named ``type_name``.

    Raises AssertionError naming the path of a key no model declares or of a value of the
    wrong primitive type.
    """
    if m := _LIST.fullmatch(type_name):
        assert isinstance(data, list), f"{where}: a list expected"
        return [deserialize(item, m[1], f"{where}[{i}]") for i, item in enumerate(data)]
    if m := _DICT.fullmatch(type_name):
        assert isinstance(data, dict), f"{where}: a mapping expected"
        return {k: deserialize(v, m[1] or m[2], f"{where}.{k}") for k, v in data.items()}
    if type_name == "object":  # IntOrString, free-form status
        return data
    if type_name in _PRIMITIVES:
        ok = isinstance(data, _PRIMITIVES[type_name]) and (
            type_name == "bool" or not isinstance(data, bool))
        assert ok, f"{where}: {data!r} is not a {type_name}"
        return data
    klass = getattr(kserve.models, type_name, None) or getattr(kubernetes_models, type_name)
    assert isinstance(data, dict), f"{where}: a mapping expected for {type_name}"
    undeclared = set(data) - set(klass.attribute_map.values())
    assert not undeclared, f"{where}: {sorted(undeclared)} are not fields of {type_name}"
    return klass(**{attr: deserialize(data[key], klass.openapi_types[attr], f"{where}.{key}")
                    for attr, key in klass.attribute_map.items() if key in data})


def differences(manifest: Any, serialized: Any, where: str) -> Iterator[str]:
    """Where ``serialized`` (the SDK's output) does not say what ``manifest`` says.

    Keys the SDK adds are differences too, except the empty string it puts in a required string
    the manifest leaves to KServe (the predictor's model ``name``, which KServe defaults).
    """
    if isinstance(manifest, dict) and isinstance(serialized, dict):
        for key in manifest.keys() | serialized.keys():
            if key not in serialized:
                yield f"{where}.{key}: lost"
            elif key not in manifest:
                if serialized[key] != "":
                    yield f"{where}.{key}: added as {serialized[key]!r}"
            else:
                yield from differences(manifest[key], serialized[key], f"{where}.{key}")
    elif isinstance(manifest, list) and isinstance(serialized, list) and (
            len(manifest) == len(serialized)):
        for i, (a, b) in enumerate(zip(manifest, serialized, strict=True)):
            yield from differences(a, b, f"{where}[{i}]")
    elif manifest != serialized or type(manifest) is not type(serialized):
        yield f"{where}: {manifest!r} became {serialized!r}"


def container_of(runtime: dict[str, Any]) -> dict[str, Any]:
    (only,) = runtime["spec"]["containers"]
    return only


@pytest.mark.parametrize("name", sorted(SDK_MODELS))
def test_loads_into_the_sdk_model_with_no_field_lost(
        name: str, kserve_objects: dict[str, dict[str, Any]]) -> None:
    manifest = kserve_objects[name]
    model = SDK_MODELS[name]
    loaded = deserialize(manifest, model.__name__, name)
    assert isinstance(loaded, model)
    serialized = kserve.ApiClient().sanitize_for_serialization(loaded)
    assert list(differences(manifest, serialized, name)) == []


def test_deserialize_refuses_an_undeclared_field(
        kserve_objects: dict[str, dict[str, Any]]) -> None:
    # What makes the round trip above worth running: a misspelt field is an error, not a loss.
    manifest = yaml.safe_load(yaml.safe_dump(kserve_objects["servingruntime.yaml"]))
    manifest["spec"]["supportedModelFormats"][0]["autoselect"] = True
    with pytest.raises(AssertionError, match=re.escape(
            "servingruntime.yaml.spec.supportedModelFormats[0]: ['autoselect'] are not fields "
            "of V1alpha1SupportedModelFormat")):
        deserialize(manifest, "V1alpha1ServingRuntime", "servingruntime.yaml")


def test_the_two_runtimes_are_one_runtime(kserve_objects: dict[str, dict[str, Any]]) -> None:
    namespaced, cluster = (kserve_objects[n] for n in RUNTIMES)
    assert (namespaced["kind"], cluster["kind"]) == ("ServingRuntime", "ClusterServingRuntime")
    assert namespaced["metadata"] == cluster["metadata"]
    assert namespaced["spec"] == cluster["spec"]


def test_kustomization_installs_the_runtimes(kserve_objects: dict[str, dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((KSERVE / KUSTOMIZATION).read_text())
    assert sorted(kustomization["resources"]) == sorted(RUNTIMES)
    # The rest is examples, applied on their own.
    assert sorted(set(kserve_objects) - set(RUNTIMES)) == ["inferenceservice.yaml"]
    (image,) = kustomization["images"]
    for name in RUNTIMES:
        assert container_of(kserve_objects[name])["image"].split(":")[0] == image["name"]


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_serves_tensorflow_models_over_tf_serving_apis(
        name: str, kserve_objects: dict[str, dict[str, Any]]) -> None:
    spec = kserve_objects[name]["spec"]
    assert {(f["name"], f["version"]) for f in spec["supportedModelFormats"]} == {
        ("tensorflow", "1"), ("tensorflow", "2")}
    assert spec["protocolVersions"] == ["v1", "grpc-v1"]


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_runs_the_server_with_kserves_tf_serving_args(
        name: str, kserve_objects: dict[str, dict[str, Any]]) -> None:
    container = container_of(kserve_objects[name])
    assert container["name"] == KSERVE_CONTAINER
    assert container["command"] == [SERVER_BINARY]
    args = container["args"]
    assert args[:len(KSERVE_TF_SERVING_ARGS)] == KSERVE_TF_SERVING_ARGS
    # What follows adds tfsfast's flags and overrides none of KServe's.
    added = flag_values(args[len(KSERVE_TF_SERVING_ARGS):])
    assert not set(added) & set(flag_values(KSERVE_TF_SERVING_ARGS))


@pytest.mark.parametrize("name", RUNTIMES)
def test_container_ports_and_probes_match_the_args(
        name: str, kserve_objects: dict[str, dict[str, Any]]) -> None:
    container = container_of(kserve_objects[name])
    flags = flag_values(container["args"])
    rest_port = int(flags["rest_api_port"])
    # The one port Knative allows: HTTP to the REST API, under the name that says HTTP/1.
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http1", rest_port)]
    assert {kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")} == {
        "startupProbe": ("/v2/health/live", rest_port),
        "livenessProbe": ("/v2/health/live", rest_port),
        "readinessProbe": ("/v2/health/ready", rest_port),
    }


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_runs_as_the_images_non_root_user(
        name: str, kserve_objects: dict[str, dict[str, Any]]) -> None:
    runtime = kserve_objects[name]
    container = container_of(runtime)
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (1000, 1000)
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_inference_service_uses_the_runtime(kserve_objects: dict[str, dict[str, Any]]) -> None:
    isvc = kserve_objects["inferenceservice.yaml"]
    runtime = kserve_objects["servingruntime.yaml"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["storageUri"].startswith("pvc://")
    # KServe fills {{.Name}} with this name, so it is the model's name in every request path;
    # InferenceService names are DNS-1035 labels.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])


def test_grace_period_covers_the_shutdown_delay_and_the_drain(
        kserve_objects: dict[str, dict[str, Any]]) -> None:
    isvc = kserve_objects["inferenceservice.yaml"]
    grace = isvc["spec"]["predictor"].get("terminationGracePeriodSeconds",
                                          DEFAULT_GRACE_SECONDS)
    for name in RUNTIMES:
        flags = flag_values(container_of(kserve_objects[name])["args"])
        delay = int(flags["shutdown_delay_seconds"])
        drain = int(flags["drain_timeout_seconds"])
        assert delay > 0 and drain > 0
        # The server exits at the latest EXIT_GRACE_SECONDS after the drain's deadline.
        assert grace > delay + drain + EXIT_GRACE_SECONDS
