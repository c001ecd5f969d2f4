"""The package as pip builds and installs it: console scripts, build requirements, the runtime
extension's library search path, and what the sdist and wheel hold.

The full check (``pip install .`` into a fresh venv, then serving) is test_fresh_install.py,
run by ``make package-test``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import tfsfast.__main__
from tfsfast import __version__, check_extensions
from tfsfast.server.server_options import usage_text, version_text

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = ("tensorflow_model_server", "tfsfast")
DIST_INFO = f"tfsfast-{__version__}.dist-info/"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
DISABLED = os.environ.get("TFSFAST_NO_EXTENSIONS", "").lower() not in ("", "0", "false", "no")
TENSORFLOW_LIBRARY = "libtensorflow_cc.so.2"


def test_console_scripts_are_declared_and_resolve_to_their_commands() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {"tfsfast": "tfsfast.__main__:tfsfast",
                       "tensorflow_model_server": "tfsfast.__main__:tensorflow_model_server"}
    for name, value in scripts.items():
        entry_point = importlib.metadata.EntryPoint(name, value, "console_scripts")
        assert entry_point.load() is getattr(tfsfast.__main__, name)


def test_the_installed_metadata_declares_the_same_scripts() -> None:
    installed = {ep.name: ep.value
                 for ep in importlib.metadata.distribution("tfsfast").entry_points
                 if ep.group == "console_scripts"}
    assert installed == PYPROJECT["project"]["scripts"], "stale install: run `make install`"


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_the_usage_for_help(script: str) -> None:
    path = Path(sysconfig.get_path("scripts")) / script
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout, result.stderr) == (255, usage_text(script), "")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_the_version(script: str) -> None:
    path = Path(sysconfig.get_path("scripts")) / script
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, version_text(), "")


def test_tensorflow_is_a_build_requirement_in_the_runtime_range() -> None:
    build = {r.name: r for r in map(Requirement, PYPROJECT["build-system"]["requires"])}
    runtime = _requirements()
    assert build["tensorflow"].specifier == runtime["tensorflow"].specifier
    assert str(build["tensorflow"].specifier) != ""


def _requirements() -> dict[str, Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {r.name: r for r in requirements}


@pytest.mark.skipif(DISABLED, reason="TFSFAST_NO_EXTENSIONS is set")
def test_runtime_extensions_find_tensorflow_beside_their_installed_package(
        elf_dynamic: Callable[[Path], dict[str, list[str]]]) -> None:
    """Installed, ``site-packages/tfsfast/runtime/_session*.so`` reaches
    ``site-packages/tensorflow`` through ``$ORIGIN/../../tensorflow``; built in place (this
    editable install), it also holds the absolute path of this environment's tensorflow, the
    one it imports."""
    tf_spec = importlib.util.find_spec("tensorflow")
    assert tf_spec is not None and tf_spec.submodule_search_locations is not None
    tf_dir = Path(next(iter(tf_spec.submodule_search_locations))).resolve()
    site_packages = tf_dir.parent

    linking = {}
    for name in check_extensions.declared_modules():
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None and spec.origin.endswith(SUFFIX), \
            f"{name} is not built: run `make install`"
        dynamic = elf_dynamic(Path(spec.origin))
        if TENSORFLOW_LIBRARY in dynamic["NEEDED"]:
            linking[name] = dynamic
    assert "tfsfast.runtime._session" in linking

    for name, dynamic in linking.items():
        package_parts = name.split(".")[:-1]
        relative = "../" * len(package_parts) + "tensorflow"
        assert dynamic["RPATH"] == []  # RUNPATH, which LD_LIBRARY_PATH may override
        origin, *absolute = [e for e in dynamic["RUNPATH"] if "tensorflow" in e]
        assert origin == f"$ORIGIN/{relative}"
        assert [Path(e).resolve() for e in absolute] == [tf_dir]
        installed_dir = site_packages.joinpath(*package_parts)
        assert (installed_dir / relative / TENSORFLOW_LIBRARY).resolve().is_file()


def _build(source: Path, hook: str, out: Path) -> Path:
    """Runs setuptools' PEP 517 ``hook`` (build_sdist or build_wheel) in ``source``, the way pip
    does, with the compiled modules skipped; returns the built file."""
    out.mkdir(parents=True, exist_ok=True)
    code = (f"import sys; from setuptools import build_meta; "
            f"print(build_meta.{hook}(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source,
                            env={**os.environ, "TFSFAST_NO_EXTENSIONS": "1"},
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / result.stdout.splitlines()[-1]


def _package_files(root: Path) -> set[str]:
    """The files of the tfsfast package a build should ship, relative to ``root``."""
    return {p.relative_to(root).as_posix() for p in (root / "tfsfast").rglob("*")
            if p.suffix in (".py", ".pyx", ".pxd", ".pyi") and "__pycache__" not in p.parts}


def test_sdist_and_wheels_hold_the_package_and_its_build_inputs_only(
        tmp_path: Path, checkout_copier: Callable[[Path], Path]) -> None:
    source = checkout_copier(tmp_path / "src")
    expected_package = _package_files(source)
    assert "tfsfast/runtime/_session.pyx" in expected_package
    # What a working checkout has beside its sources: none of it belongs in a distribution.
    for decoy in (".venv/bin/python", "build/lib/tfsfast/codecs/_json" + SUFFIX,
                  "tfsfast/codecs/_json.c", "tfsfast/codecs/_json" + SUFFIX, "models/x/1/y"):
        (source / decoy).parent.mkdir(parents=True, exist_ok=True)
        (source / decoy).write_bytes(b"decoy")

    sdist = _build(source, "build_sdist", tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}
        archive.extractall(tmp_path / "unpacked", filter="data")
    top_level = {m.split("/")[0] for m in members}
    assert top_level == {"PKG-INFO", "setup.cfg", "tfsfast.egg-info", "README.md",
                         "MANIFEST.in", "pyproject.toml", "setup.py", "requirements.txt",
                         "requirements-dev.txt", "csrc", "tfsfast"}
    assert {m for m in members if m.startswith("csrc/")} == {
        p.relative_to(source).as_posix() for p in (source / "csrc").glob("*.h")}
    assert {m for m in members if m.startswith("tfsfast/")} == expected_package

    in_tree = _build(source, "build_wheel", tmp_path / "wheel-in-tree")
    from_sdist = _build(next((tmp_path / "unpacked").iterdir()), "build_wheel",
                        tmp_path / "wheel-from-sdist")
    for wheel in (in_tree, from_sdist):
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            scripts = archive.read(DIST_INFO + "entry_points.txt").decode()
        assert {n for n in names if not n.startswith(DIST_INFO)} == expected_package, wheel.name
        assert ("tensorflow_model_server = tfsfast.__main__:tensorflow_model_server"
                in scripts.splitlines())
