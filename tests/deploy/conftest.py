"""The manifests under deploy/, read once per session."""

from __future__ import annotations

from typing import Any

import pytest

from .manifests import KSERVE, KUBERNETES, read_objects


@pytest.fixture(scope="session")
def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """deploy/kubernetes's objects by file name, the kustomization excluded."""
    return read_objects(KUBERNETES)


@pytest.fixture(scope="session")
def kserve_objects() -> dict[str, dict[str, Any]]:
    """deploy/kserve's objects by file name, the kustomization excluded."""
    return read_objects(KSERVE)
