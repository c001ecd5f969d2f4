"""What ``--xla_cpu_compilation_enabled`` / ``--xla_gpu_compilation_enabled`` change, as in TF
Serving: the process-wide XLA switch, never the session ConfigProto."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from tensorflow.core.protobuf import config_pb2

from tfsfast.server import server
from tfsfast.server.server_options import ServerOptions

COMBINATIONS = list(itertools.product([False, True], repeat=2))


def _options(cpu: bool, gpu: bool, **more: object) -> ServerOptions:
    return ServerOptions(model_base_path="/m", xla_cpu_compilation_enabled=cpu,
                         xla_gpu_compilation_enabled=gpu, **more)  # type: ignore[arg-type]


def _config(options: ServerOptions) -> config_pb2.ConfigProto:
    return config_pb2.ConfigProto.FromString(server._session_config(options))


@pytest.mark.parametrize(("cpu", "gpu"), COMBINATIONS)
def test_the_session_config_is_the_same_under_every_combination(cpu: bool, gpu: bool) -> None:
    config = _config(_options(cpu, gpu))
    # No auto-clustering forced on every graph: TF Serving's server.cc never sets it.
    assert config.graph_options.optimizer_options.global_jit_level == (
        config_pb2.OptimizerOptions.DEFAULT)
    assert config == _config(ServerOptions(model_base_path="/m"))


@pytest.mark.parametrize(("cpu", "gpu"), COMBINATIONS)
def test_auto_clustering_is_the_session_config_files_choice(cpu: bool, gpu: bool,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "session.config"
    path.write_text("graph_options { optimizer_options { global_jit_level: ON_2 } }\n")
    config = _config(_options(cpu, gpu, tensorflow_session_config_file=str(path)))
    assert config.graph_options.optimizer_options.global_jit_level == (
        config_pb2.OptimizerOptions.ON_2)


@pytest.mark.parametrize(("cpu", "gpu"), COMBINATIONS)
def test_xla_compilation_is_refused_unless_a_flag_allows_it(cpu: bool, gpu: bool) -> None:
    # The switch is for the whole process and has no way back: each case runs in a process of
    # its own.
    program = (
        "from tfsfast.server import server\n"
        "from tfsfast.server.server_options import ServerOptions\n"
        "from tfsfast.runtime import xla_compilation\n"
        "before = xla_compilation.xla_compilation_disabled()\n"
        f"server._apply_xla_flags(ServerOptions(model_base_path='/m', "
        f"xla_cpu_compilation_enabled={cpu}, xla_gpu_compilation_enabled={gpu}))\n"
        "print(before, xla_compilation.xla_compilation_disabled())\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, check=True)
    refused = not (cpu or gpu)
    assert result.stdout == f"False {refused}\n"
