"""``--xla_cpu_compilation_enabled`` and ``--xla_gpu_compilation_enabled`` on a real server
process, with TF Serving's semantics (``main.cc``, ``server.cc``).

XLA: without either flag XLA compilation is refused for the whole process, so a model whose
function asks for XLA (``jit_compile=True``) fails its runs with INTERNAL ``XLA compilation
disabled``; either flag lets it compile. No combination turns on auto-clustering for the other
models, which serve under each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tfsfast.testing.export_models import export_half_plus_two_tf2
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def models_config(tmp_path_factory: pytest.TempPathFactory,
                  exported_models: dict[str, Path]) -> Path:
    """half_plus_two (plain), and half_plus_two whose function must be compiled by XLA."""
    import shutil

    root = tmp_path_factory.mktemp("xla")
    shutil.copytree(exported_models["tf2"], root / "plain" / "1")
    export_half_plus_two_tf2(str(root / "xla" / "1"), jit_compile=True)
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("plain", "xla")) + "}\n")
    return config


def _predict(server: ServerProcess, model: str) -> tuple[int, object]:
    return server.json("POST", f"/v1/models/{model}:predict", {"instances": [2.0]})


@pytest.mark.parametrize(("flags", "xla_allowed"), [
    ([], False),
    (["--xla_cpu_compilation_enabled"], True),
    (["--xla_gpu_compilation_enabled"], True),
    (["--xla_cpu_compilation_enabled", "--xla_gpu_compilation_enabled"], True),
    (["--xla_cpu_compilation_enabled=false", "--xla_gpu_compilation_enabled=false"], False),
])
def test_xla_compilation_is_opt_in(models_config: Path, flags: list[str],
                                   xla_allowed: bool) -> None:
    with ServerProcess([f"--model_config_file={models_config}", *flags]) as s:
        assert _predict(s, "plain") == (200, {"predictions": [3.0]})
        status, body = _predict(s, "xla")
        if xla_allowed:
            assert (status, body) == (200, {"predictions": [3.0]})
        else:
            # TensorFlow appends the node that failed on the lines after its message.
            assert status == 500
            assert body["error"].split("\n")[0] == "XLA compilation disabled"  # type: ignore[index]

