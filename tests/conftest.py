"""Shared by the whole suite: the check that the compiled modules are there, and models exported
with TensorFlow once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Quiet TensorFlow's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfsfast import _extensions, check_extensions


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stops the run before any test when a compiled module the package declares is missing or
    fails to import.

    tfsfast then runs the module's pure-Python twin, announced by a warning only, and every test
    meant for the compiled module would pass on the twin: a broken build would pass. The
    declared modules are :mod:`tfsfast.check_extensions`'s. With ``TFSFAST_NO_EXTENSIONS`` set
    the twins are what is tested, and nothing is checked.
    """
    if _extensions.NO_EXTENSIONS:
        return
    # Loading the runtime's libraries makes TensorFlow's C++ code talk on fd 2, before the
    # first test captures it: kept out of the way, and shown only when something is wrong.
    with tempfile.TemporaryFile() as chatter:
        stderr = os.dup(2)
        os.dup2(chatter.fileno(), 2)
        try:
            unavailable = [status for status in check_extensions.check() if not status.ok]
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
        if unavailable:
            chatter.seek(0)
            said = chatter.read().decode(errors="replace")
            pytest.exit("compiled modules unavailable; rebuild them (make build), or set "
                        "TFSFAST_NO_EXTENSIONS=1 to test the pure-Python twins:\n" + "\n".join(
                            f"  {s.status} {s.name}: {s.detail}" for s in unavailable)
                        + (f"\nwhile importing them, stderr said:\n{said}" if said else ""),
                        returncode=pytest.ExitCode.TESTS_FAILED)


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Version directories of small models, exported by TensorFlow for this test session.

    ``tf2``: half_plus_two via tf.saved_model.save (x float [-1]); ``tf1``: the SavedModelBuilder
    export with predict/regress/classify signatures (x float [-1, 1]); ``tf1_three``: the same
    with y = 0.5x + 3.
    """
    from tfsfast.testing import export_models

    root = tmp_path_factory.mktemp("exported")
    return {
        "tf2": Path(export_models.export_half_plus_two_tf2(str(root / "tf2"))),
        "tf1": Path(export_models.export_half_plus_two_tf1(str(root / "tf1"))),
        "tf1_three": Path(export_models.export_half_plus_two_tf1(str(root / "tf1_three"),
                                                                 b=3.0)),
    }


@pytest.fixture
def model_base(tmp_path: Path, exported_models: dict[str, Path]):
    """A function that lays out ``<tmp>/<name>/<version>`` copies of exported models."""

    def make(name: str, **versions: str) -> Path:
        base = tmp_path / name
        base.mkdir(exist_ok=True)
        for version, which in versions.items():
            shutil.copytree(exported_models[which], base / version.lstrip("v"))
        return base

    return make
