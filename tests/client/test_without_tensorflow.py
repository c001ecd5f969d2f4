"""``tfsfast.client`` without TensorFlow: it never imports it, and the ``tfsfast-client``
distribution installs and runs in an environment that has none."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]

# Every client's every call, then what the process imported. Run as a script: argv[1] and
# argv[2] are the REST and gRPC targets.
EVERY_CALL = textwrap.dedent('''
    import asyncio, sys
    import numpy as np
    from tfsfast.client import (AsyncGrpcClient, AsyncRestClient, GrpcClient, RequestError,
                                RestClient)
    from tfsfast.codecs import tensor_proto

    rest, grpc_target = sys.argv[1], sys.argv[2]
    x = np.float32([[1.0], [2.0]])
    examples = dict(signature_name="classify_x_to_y")

    def check(client):
        assert client.predict("half_plus_two", {"x": x}).tolist() == [[2.5], [3.0]]
        assert client.classify("half_plus_two", [{"x": 2.0}], **examples) == [[("", 3.0)]]
        assert client.regress("half_plus_two", [{"x": 2.0}],
                              signature_name="regress_x_to_y") == [3.0]
        assert client.model_status("half_plus_two")[0].state == "AVAILABLE"
        assert client.model_metadata("half_plus_two").version == 123
        try:
            client.predict("no_such_model", {"x": x})
        except RequestError as e:
            assert e.message == "Servable not found for request: Latest(no_such_model)"
        else:
            raise AssertionError("no error")

    for wire_format in ("msgpack", "json"):
        with RestClient(rest, wire_format=wire_format) as c:
            check(c)
    with GrpcClient(grpc_target) as c:
        check(c)

    class Sync:
        def __init__(self, client, loop):
            self.client, self.loop = client, loop
        def __getattr__(self, name):
            method = getattr(self.client, name)
            return lambda *a, **k: self.loop.run_until_complete(method(*a, **k))

    loop = asyncio.new_event_loop()
    for make in (lambda: AsyncRestClient(rest), lambda: AsyncGrpcClient(grpc_target)):
        async def made():
            return make()
        client = loop.run_until_complete(made())
        check(Sync(client, loop))
        loop.run_until_complete(client.close())
    loop.close()
    print(tensor_proto.TensorProtoCodec.__module__)
    print(" ".join(sorted(m for m in sys.modules
                          if m.split(".")[0] in ("tensorflow", "tensorflow_serving")
                          or m.startswith("google.protobuf"))))
''')


def test_the_client_never_imports_tensorflow(server: ServerProcess) -> None:
    """In tfsfast's own environment, where TensorFlow is installed. The client's codec is the
    compiled one whatever the tests run (the twin parses with TensorFlow's protos)."""
    env = {key: value for key, value in os.environ.items() if key != "TFSFAST_NO_EXTENSIONS"}
    done = subprocess.run(
        [sys.executable, "-c", EVERY_CALL, f"localhost:{server.rest_port}",
         f"localhost:{server.grpc_port}"], capture_output=True, text=True, env=env,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["tfsfast.codecs._tensor_proto", ""]


def test_the_rest_clients_do_not_import_grpcio() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n"
         "from tfsfast.client import AsyncRestClient, RestClient, RequestError\n"
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'tensorflow')))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "[]\n"


def copy_sources(target: Path) -> None:
    """The repository's ``client/`` and ``tfsfast/`` sources (what a checkout holds: no
    compiled modules, generated C or build directories), for a build that leaves the checkout
    untouched."""
    ignore = shutil.ignore_patterns("*.so", "*.c", "__pycache__", "build", "*.egg-info")
    shutil.copytree(REPOSITORY / "client", target / "client", ignore=ignore)
    shutil.copytree(REPOSITORY / "tfsfast", target / "tfsfast", ignore=ignore)
    shutil.copytree(REPOSITORY / "csrc", target / "csrc", ignore=ignore)


@pytest.mark.slow
def test_the_client_distribution_installs_and_runs_without_tensorflow(
        tmp_path: Path, server: ServerProcess) -> None:
    copy_sources(tmp_path / "repository")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "TFSFAST_NO_EXTENSIONS")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(tmp_path / "repository" / "client")],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert install.returncode == 0, install.stdout + install.stderr

    no_tensorflow = subprocess.run([python, "-c", "import tensorflow"], capture_output=True,
                                   text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert no_tensorflow.returncode == 1
    assert "ModuleNotFoundError: No module named 'tensorflow'" in no_tensorflow.stderr

    done = subprocess.run(
        [python, "-c", EVERY_CALL, f"localhost:{server.rest_port}",
         f"localhost:{server.grpc_port}"], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # The compiled codec, from the installed distribution rather than the checkout.
    assert done.stdout.splitlines() == ["tfsfast.codecs._tensor_proto", ""]
    where = subprocess.run([python, "-c", "import tfsfast.client; print(tfsfast.client.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
                           check=True)
    assert where.stdout.startswith(str(venv))
