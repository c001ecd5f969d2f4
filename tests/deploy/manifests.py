"""Reading the manifests under deploy/, one object per file.

``deploy/kubernetes`` holds one Kubernetes object per file besides its kustomization;
``deploy/kserve`` holds the KServe runtimes, their kustomization and an InferenceService example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KSERVE = DEPLOY / "kserve"
KUSTOMIZATION = "kustomization.yaml"


def read_manifest(path: Path) -> dict[str, Any]:
    """The one YAML document of ``path``; more than one per file is an error here."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(documents) == 1, f"{path}: {len(documents)} documents, one expected"
    return documents[0]


def read_objects(directory: Path) -> dict[str, dict[str, Any]]:
    """The objects of ``directory`` by file name, its kustomization excluded."""
    return {p.name: read_manifest(p) for p in sorted(directory.glob("*.yaml"))
            if p.name != KUSTOMIZATION}


def flag_values(args: list[str]) -> dict[str, str]:
    """``--name=value`` args as {name: value}; a later repeat wins, as on the command line."""
    values = {}
    for arg in args:
        assert arg.startswith("--") and "=" in arg, f"not a --name=value flag: {arg}"
        name, _, value = arg[2:].partition("=")
        values[name] = value
    return values
