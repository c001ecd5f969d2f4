"""A tfsfast server for the client's tests, and a port that never answers.

``server``: one process for the package, serving ``half_plus_two`` (TF Serving's TF1 test export,
version 123: predict ``serving_default`` x float [-1, 1] -> y, ``classify_x_to_y`` and
``regress_x_to_y`` on tf.Examples with a float feature ``x``; y = 0.5x + 2) and ``multi_io``
(version 1: several inputs and outputs of several dtypes, and a scalar signature; see
``tfsfast.testing.export_models.export_multi_io``).

``silent_port``: a port that accepts connections and never answers, for deadlines.
(``clients`` makes the clients.)
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfsfast.testing.server_process import ServerProcess


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    from tfsfast.testing import export_models

    root = tmp_path_factory.mktemp("client_models")
    shutil.copytree(exported_models["tf1"], root / "half_plus_two" / "123")
    export_models.export_multi_io(str(root / "multi_io" / "1"))
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("half_plus_two", "multi_io")) + "}\n")
    with ServerProcess([f"--model_config_file={config}"]) as s:
        yield s


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel's backlog) and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield listener.getsockname()[1]
    listener.close()
