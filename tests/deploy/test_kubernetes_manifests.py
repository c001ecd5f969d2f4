"""deploy/kubernetes: schema-valid objects that fit together and fit the image they run.

Validation is kubernetes-validate's strict mode (an unknown field is an error) against the
Kubernetes API schemas of :data:`KUBERNETES_VERSIONS`. What a schema cannot see is checked by
hand: the kustomization lists every file, the Service and the probes name ports the container
declares, the selectors match the pod template, the grace period covers the shutdown the args
ask for, and the security context is the image's non-root user on a read-only root.
(tests/deploy/test_manifests_serve.py starts the server with the Deployment's args.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tfsfast.server import model_config as mc
from tfsfast.server.server import EXIT_GRACE_SECONDS

from .manifests import KUBERNETES, KUSTOMIZATION, flag_values, read_manifest

# The oldest Kubernetes release the manifests are written for (autoscaling/v2, policy/v1 with
# unhealthyPodEvictionPolicy, Service appProtocol) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", "1.37")

IMAGE_UID = IMAGE_GID = 1000
SERVER_BINARY = "/usr/bin/tensorflow_model_server"


def by_kind(objects: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects.values() if o["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def deployment(kubernetes_objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return by_kind(kubernetes_objects, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(p.name for p in KUBERNETES.glob("*.yaml")
                                        if p.name != KUSTOMIZATION))
def test_every_object_validates_strictly(name: str, version: str) -> None:
    manifest = read_manifest(KUBERNETES / name)
    assert kubernetes_validate.validate(manifest, version, strict=True) == version


def test_strict_validation_rejects_an_unknown_field(deployment: dict[str, Any]) -> None:
    # What makes the test above worth running: a misspelt field is not silently dropped.
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError) as e:
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    assert "'readinessProbes' was unexpected" in e.value.message


def test_kustomization_lists_exactly_the_files_present(
        kubernetes_objects: dict[str, dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((KUBERNETES / KUSTOMIZATION).read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(kubernetes_objects)


def test_kustomization_sets_the_image_of_every_container(container: dict[str, Any]) -> None:
    kustomization = yaml.safe_load((KUBERNETES / KUSTOMIZATION).read_text())
    (image,) = kustomization["images"]
    # kustomize matches on the name without the tag.
    assert container["image"].split(":")[0] == image["name"] == "tfsfast"
    assert {"newName", "newTag"} <= set(image)


def test_server_runs_directly_with_explicit_ports(container: dict[str, Any]) -> None:
    assert container["command"] == [SERVER_BINARY]
    flags = flag_values(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(flags["port"]), "http": int(flags["rest_api_port"])}


def test_grace_period_covers_the_shutdown_delay_and_the_drain(
        deployment: dict[str, Any], container: dict[str, Any]) -> None:
    flags = flag_values(container["args"])
    delay = int(flags["shutdown_delay_seconds"])
    drain = int(flags["drain_timeout_seconds"])
    assert delay > 0 and drain > 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The server exits at the latest EXIT_GRACE_SECONDS after the drain's deadline.
    assert grace > delay + drain + EXIT_GRACE_SECONDS


def test_probes_use_the_health_endpoints_on_the_rest_port(container: dict[str, Any]) -> None:
    probes = {kind: container[kind]["httpGet"]
              for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/v2/health/live",
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    assert {probe["port"] for probe in probes.values()} == {"http"}


def test_startup_probe_allows_minutes_for_model_loading(container: dict[str, Any]) -> None:
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_security_context_is_the_images_non_root_user(
        deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    effective = {**pod["securityContext"], **container["securityContext"]}
    assert effective["runAsNonRoot"] is True
    assert (effective["runAsUser"], effective["runAsGroup"]) == (IMAGE_UID, IMAGE_GID)
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert effective["readOnlyRootFilesystem"] is True
    # The one place the server writes.
    volumes = {v["name"]: v for v in pod["volumes"]}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_resources_have_requests_and_limits(container: dict[str, Any]) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


def test_models_come_from_the_declared_claim_read_only(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any],
        container: dict[str, Any]) -> None:
    claim = by_kind(kubernetes_objects, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]["spec"]
    (models,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert models["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == models["name"]]
    assert mount["readOnly"] is True
    # Every replica mounts it, on any node.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_model_config_comes_from_the_configmap_and_is_polled(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any],
        container: dict[str, Any]) -> None:
    configmap = by_kind(kubernetes_objects, "ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    # A subPath mount is never refreshed by the kubelet: a ConfigMap edit would not reach it.
    assert "subPath" not in mount
    flags = flag_values(container["args"])
    config_file = Path(flags["model_config_file"])
    assert config_file.parent == Path(mount["mountPath"])
    assert config_file.name in configmap["data"]
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0


def test_model_config_parses_and_points_into_the_models_volume(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any],
        container: dict[str, Any]) -> None:
    configmap = by_kind(kubernetes_objects, "ConfigMap")
    config = mc.parse_model_server_config(configmap["data"]["models.config"])
    mc.validate_model_config_list(config)
    pod = deployment["spec"]["template"]["spec"]
    claim_volumes = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    (models_dir,) = [Path(m["mountPath"]) for m in container["volumeMounts"]
                     if m["name"] in claim_volumes]
    models = config.model_config_list.config
    assert models, "no model configured"
    for model in models:
        assert Path(model.base_path).parent == models_dir
        assert model.model_platform == "tensorflow"


def test_service_routes_to_the_named_container_ports(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any],
        container: dict[str, Any]) -> None:
    service = by_kind(kubernetes_objects, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["name"]: (p["port"], p["targetPort"], p["appProtocol"])
            for p in service["spec"]["ports"]} == {
        "grpc": (container_ports["grpc"], "grpc", "grpc"),
        "http": (container_ports["http"], "http", "http"),
    }


def test_deployment_selector_matches_its_pods(deployment: dict[str, Any]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The autoscaler owns the replica count.
    assert "replicas" not in deployment["spec"]


def test_autoscaler_scales_the_deployment_on_cpu(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any],
        container: dict[str, Any]) -> None:
    hpa = by_kind(kubernetes_objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"], "kind": "Deployment",
        "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is a share of the request: without one the autoscaler cannot compute it.
    assert "cpu" in container["resources"]["requests"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_disruption_budget_covers_the_pods_and_leaves_one_serving(
        kubernetes_objects: dict[str, dict[str, Any]], deployment: dict[str, Any]) -> None:
    pdb = by_kind(kubernetes_objects, "PodDisruptionBudget")
    hpa = by_kind(kubernetes_objects, "HorizontalPodAutoscaler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # At the autoscaler's minimum, an eviction still leaves a replica serving.
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
