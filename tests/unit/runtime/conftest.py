"""Fixtures for the runtime tests: both implementations, and the models they run.

Every test that takes ``runtime`` runs once against the compiled module and once against the
Python twin (the compiled one is skipped only under ``TFSFAST_NO_EXTENSIONS``; one that is
missing or fails to import is an error). Models are exported with
TensorFlow once per test session (``tfsfast.testing.runtime_models``), so the suite needs nothing
outside the repository; tests that use TF Serving's own test data take ``testdata``, which skips
when ``../shared/testdata`` is absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfsfast.testing import runtime_models
from tfsfast.testing.test_util import implementations

REPO_ROOT = Path(__file__).resolve().parents[3]
TESTDATA = REPO_ROOT.parent / "shared" / "testdata" / "tfserving"


@pytest.fixture(scope="session",
                params=implementations("tfsfast.runtime._session", "tfsfast.runtime._session_py"))
def runtime(request: pytest.FixtureRequest) -> ModuleType:
    """One runtime implementation module (``load_saved_model``, ``IMPLEMENTATION``)."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="session")
def testdata() -> Path:
    """TF Serving's test models (``../shared/testdata/tfserving``); skips when absent."""
    if not TESTDATA.is_dir():
        pytest.skip(f"TF Serving test data not found at {TESTDATA}")
    return TESTDATA


class ExportedModels:
    """Exports each model the first time a test asks for it; one directory per model."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._dirs: dict[str, Path] = {}

    def get(self, name: str, export: Callable[[str], str] | None = None) -> Path:
        if name not in self._dirs:
            export = export or getattr(runtime_models, f"export_{name}")
            self._dirs[name] = Path(export(str(self._root / name)))
        return self._dirs[name]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> ExportedModels:
    return ExportedModels(tmp_path_factory.mktemp("runtime_models"))


@pytest.fixture(scope="session")
def sessions(models: ExportedModels) -> Iterator[Callable[..., Any]]:
    """``sessions(runtime, model_name)``: a loaded session shared by the tests (closed at the end).

    Tests that change state (the counter) must set it first; tests that close a session load
    their own.
    """
    loaded: dict[tuple[str, str], Any] = {}

    def get(runtime: ModuleType, name: str) -> Any:
        key = (runtime.IMPLEMENTATION, name)
        if key not in loaded:
            loaded[key] = runtime.load_saved_model(str(models.get(name)), ["serve"])
        return loaded[key]

    yield get
    for session in loaded.values():
        session.close()
