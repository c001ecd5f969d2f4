"""``pip install .`` into a fresh venv, as a user or an image build does it (``make
package-test``).

A copy of this checkout is installed with pip's defaults (build isolation: the build
environment gets setuptools, Cython and TensorFlow from pyproject.toml and is deleted
afterwards), then the installed package is checked from outside the source tree: the
``tensorflow_model_server`` command, every compiled module, the runtime extension's library
search path, and half_plus_two served with the compiled runtime.

It takes minutes (TensorFlow is installed twice, into the build environment and the venv; pip's
cache makes it one download), so it runs only with ``TFSFAST_PACKAGE_TEST=1``, which ``make
package-test`` sets. The fixture prints how long the install took.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tfsfast.testing.server_process import READY_LINE, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TFSFAST_PACKAGE_TEST", "") in ("", "0"),
                       reason="installs into a fresh venv for minutes: run `make package-test`"),
]

PREDICT_BODY = {"instances": [1.0, 2.0, 5.0]}
EXPECTED = {"predictions": [2.5, 3.0, 4.5]}


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path
    work_dir: Path  # outside the source tree, so imports find the installed package only

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TFSFAST_NO_EXTENSIONS", None)
        return subprocess.run(command, cwd=self.work_dir, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
              checkout_copier: Callable[[Path], Path]) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("fresh_install")
    source = checkout_copier(root / "src")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = root / "pip-install.log"
    started = time.monotonic()
    with log.open("w") as out:
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", str(source)],
                             cwd=root, stdout=out, stderr=subprocess.STDOUT, timeout=3600,
                             check=False)
    seconds = time.monotonic() - started
    assert pip.returncode == 0, log.read_text()[-5000:]
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # what capsys.disabled() does
        print(f"\npip install . into a fresh venv: {seconds:.0f} s (log: {log})")
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    work_dir = root / "work"
    work_dir.mkdir()
    yield Installed(venv, site_packages, work_dir)
    # Two gigabytes, mostly TensorFlow: not left for pytest's kept temporary directories.
    shutil.rmtree(venv)
    shutil.rmtree(source)


@pytest.mark.parametrize("args", [["--help"], ["--version"]], ids=["help", "version"])
def test_tensorflow_model_server_prints_what_python_m_tfsfast_prints(
        installed: Installed, args: list[str]) -> None:
    command = installed.run(installed.bin("tensorflow_model_server"), *args)
    module = installed.run(installed.bin("python"), "-m", "tfsfast", *args)
    # The usage text names the program: the rest is the same.
    command_out = command.stdout.replace("usage: tensorflow_model_server\n", "usage: X\n", 1)
    module_out = module.stdout.replace("usage: python -m tfsfast\n", "usage: X\n", 1)
    assert (command.returncode, command_out, command.stderr) == \
        (module.returncode, module_out, module.stderr)
    if args == ["--help"]:
        assert command.returncode == 255
        assert command.stdout.startswith("usage: tensorflow_model_server\n")
        assert "\t--model_base_path=\"\"" in command.stdout
    else:
        assert command.returncode == 0
        assert command.stdout.startswith("TensorFlow ModelServer: ")
        assert "\nTensorFlow Library: 2." in command.stdout


def test_every_compiled_module_is_installed(installed: Installed) -> None:
    result = installed.run(installed.bin("python"), "-m", "tfsfast.check_extensions")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[:-1]]
    assert rows and all(row[0] == "compiled" for row in rows)
    assert all(row[2].startswith(f"{installed.site_packages}/tfsfast/") for row in rows)
    assert any(row[1] == "tfsfast.runtime._session" for row in rows)


def test_the_runtime_finds_tensorflow_relative_to_itself_only(
        installed: Installed, elf_dynamic: Callable[[Path], dict[str, list[str]]]) -> None:
    """The isolated build's TensorFlow was deleted with its environment: no path to it stays."""
    [session] = (installed.site_packages / "tfsfast" / "runtime").glob("_session.*.so")
    dynamic = elf_dynamic(session)
    assert "libtensorflow_cc.so.2" in dynamic["NEEDED"]
    assert [e for e in dynamic["RUNPATH"] if "tensorflow" in e] == ["$ORIGIN/../../tensorflow"]
    assert not any("pip-build-env" in e for e in dynamic["RUNPATH"] + dynamic["RPATH"])


@pytest.fixture
def server(installed: Installed, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """tensorflow_model_server serving a half_plus_two exported by the installed TensorFlow."""
    version_dir = tmp_path / "half_plus_two" / "1"
    exported = installed.run(
        installed.bin("python"), "-c",
        "import sys; from tfsfast.testing.export_models import export_half_plus_two_tf2; "
        "export_half_plus_two_tf2(sys.argv[1])", str(version_dir))
    assert exported.returncode == 0, exported.stderr
    rest_port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TFSFAST_NO_EXTENSIONS", None)
    process = subprocess.Popen(
        [installed.bin("tensorflow_model_server"), f"--port={free_port()}",
         f"--rest_api_port={rest_port}", "--model_name=half_plus_two",
         f"--model_base_path={version_dir.parent}"],
        cwd=installed.work_dir, env=env, text=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    log: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not ready.wait(0.1):
            assert process.poll() is None and time.monotonic() < deadline, "".join(log)
        yield process, rest_port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    # _extensions' warning when a compiled module falls back to its twin.
    assert not any("tfsfast: compiled module" in line for line in log), "".join(log)


def test_serves_half_plus_two_with_the_compiled_runtime(
        installed: Installed, server: tuple[subprocess.Popen[str], int]) -> None:
    process, rest_port = server
    request = urllib.request.Request(
        f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict",
        data=json.dumps(PREDICT_BODY).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert (response.status, json.loads(response.read())) == (200, EXPECTED)

    mapped = {line.split()[-1] for line in Path(f"/proc/{process.pid}/maps").read_text()
              .splitlines() if line.endswith(".so") or ".so." in line}
    [session] = (installed.site_packages / "tfsfast" / "runtime").glob("_session.*.so")
    assert str(session.resolve()) in mapped
    tensorflow_library = installed.site_packages / "tensorflow" / "libtensorflow_cc.so.2"
    assert str(tensorflow_library.resolve()) in mapped

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
