"""Helpers shared by the test suite: TF Serving's test models, and both implementations."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tfsfast import _extensions

REPO = Path(__file__).resolve().parents[2]
SHARED_TESTDATA = REPO.parent / "shared" / "testdata" / "tfserving"


def tfserving_testdata(name: str) -> Path:
    """A model or config from ``../shared/testdata/tfserving``; skips the test when absent."""
    import pytest

    path = SHARED_TESTDATA / name
    if not path.exists():
        pytest.skip(f"{path} is not available (no ../shared beside the checkout)")
    return path


def implementations(compiled: str, python: str) -> list[Any]:
    """pytest params for a compiled module and its Python twin.

    The compiled one is skipped, with the reason, when extensions are disabled; when it is enabled
    but fails to import, the test errors (a broken build must not pass as a skip).
    """
    import pytest

    params = []
    if _extensions.NO_EXTENSIONS:
        params.append(pytest.param(None, id="compiled", marks=pytest.mark.skip(
            reason="TFSFAST_NO_EXTENSIONS is set")))
    else:
        params.append(pytest.param(compiled, id="compiled"))
    params.append(pytest.param(python, id="python"))
    return params


def import_impl(name: str) -> Any:
    return importlib.import_module(name)
