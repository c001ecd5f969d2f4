"""``python -m tfsfast.check_extensions``: every compiled module the package declares imports."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfsfast import _extensions, check_extensions

REPO = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so
DISABLED = _extensions.NO_EXTENSIONS


def _package(root: Path, name: str, files: dict[str, bytes]) -> str:
    """A package ``name`` under ``root`` (to be put on sys.path) holding ``files``, every
    directory on the way a package."""
    for rel, content in {"__init__.py": b"", **files}.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        for directory in path.relative_to(root).parents[:-1]:
            (root / directory / "__init__.py").touch()
    return name


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Makes importable packages whose modules are cleaned from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_extensions, "NO_EXTENSIONS", False)
    names: list[str] = []

    def make(name: str, files: dict[str, bytes]) -> str:
        names.append(name)
        return _package(tmp_path, name, files)

    yield make
    for module in list(sys.modules):
        if module.split(".")[0] in names:
            del sys.modules[module]


def test_declared_modules_are_the_packages_cython_sources() -> None:
    # A .pyx, or a .pxd that declares the C types of the _py.py beside it (one source built
    # twice); a .pxd without either only declares.
    pyx = {p.with_suffix("") for p in (REPO / "tfsfast").rglob("*.pyx")}
    pure = {p.with_suffix("") for p in (REPO / "tfsfast").rglob("*.pxd")
            if p.with_name(p.stem + "_py.py").is_file() and p.with_suffix("") not in pyx}
    expected = sorted(".".join(p.relative_to(REPO).parts) for p in pyx | pure)
    declared = check_extensions.declared_modules()
    assert declared == expected
    assert {"tfsfast.runtime._session", "tfsfast.codecs._json",
            "tfsfast.server.http._http_protocol"} <= set(declared)
    assert {"tfsfast.util._run_cost", "tfsfast.core._handle_table",
            "tfsfast.batching._batch_queue"} <= {".".join(p.relative_to(REPO).parts)
                                                 for p in pure}


def test_declared_modules_of_nested_packages(fake_package) -> None:
    name = fake_package("pkg_nested", {"a/_one.pyx": b"", "a/b/_two.pyx": b"", "_three.pyx": b"",
                                       "_three.pxd": b"", "_four.pyi": b""})
    assert check_extensions.declared_modules(name) == [
        "pkg_nested._three", "pkg_nested.a._one", "pkg_nested.a.b._two"]


def test_a_pxd_beside_its_python_source_declares_a_compiled_module(fake_package,
                                                                   tmp_path: Path) -> None:
    name = fake_package("pkg_pure", {
        "_one.pxd": b"", "_one_py.py": b"",  # _one_py.py compiled as _one
        "a/_two.pxd": b"", "a/_two_py.py": b"",
        "_three.pxd": b"", "_three.pyx": b"", "_three_py.py": b"",  # the .pyx is the source
        "_declarations.pxd": b"",  # C declarations only: no module
        "_four_py.py": b"",  # a twin whose compiled module is a .pyx elsewhere, or none
    })
    root = tmp_path / name
    assert check_extensions.cython_sources(root, name) == {
        f"{name}._one": root / "_one_py.py",
        f"{name}._three": root / "_three.pyx",
        f"{name}.a._two": root / "a" / "_two_py.py",
    }
    assert check_extensions.declared_modules(name) == [
        f"{name}._one", f"{name}._three", f"{name}.a._two"]
    # Never built here, each compiled module is missing, although its source imports as Python.
    assert check_extensions.check_module(f"{name}._one") == check_extensions.ModuleStatus(
        f"{name}._one", "missing", f"No module named '{name}._one'")


def test_each_way_a_compiled_module_can_be_unavailable(fake_package, capsys,
                                                       tmp_path: Path) -> None:
    name = fake_package("pkg_broken", {
        "_absent.pyx": b"",
        "_garbage.pyx": b"",
        f"_garbage{SUFFIX}": b"not a shared object\n" * 8,
        "_stray.pyx": b"",
        "_stray.py": b"",
    })
    root = tmp_path / name

    assert check_extensions.main([], package=name) == 1

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"missing      pkg_broken._absent   No module named '{name}._absent'",
        f"failed       pkg_broken._garbage  ImportError: {root / ('_garbage' + SUFFIX)}: "
        "invalid ELF header",
        f"not-compiled pkg_broken._stray    imported from {root / '_stray.py'}",
    ]
    assert err == ("check_extensions: 3 of 3 compiled modules unavailable, the server would run "
                   "their pure-Python twins: pkg_broken._absent, pkg_broken._garbage, "
                   "pkg_broken._stray\n")


def test_a_missing_library_of_a_compiled_module_is_a_failure_not_a_missing_module(
        fake_package) -> None:
    name = fake_package("pkg_dependency", {"_uses.pyx": b"",
                                           "_uses.py": b"import pkg_dependency._not_there\n"})
    status = check_extensions.check_module(f"{name}._uses")
    assert status == check_extensions.ModuleStatus(
        f"{name}._uses", "failed",
        f"ModuleNotFoundError: No module named '{name}._not_there'")


def test_a_package_shipping_no_pyx_fails(fake_package, capsys) -> None:
    name = fake_package("pkg_bare", {"module.py": b""})
    assert check_extensions.main([], package=name) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("check_extensions: pkg_bare ships no Cython sources (.pyx, or .pxd beside a "
                   "_py.py), so which compiled modules it should have is unknown (was it "
                   "installed without its package data?)\n")


def test_not_a_package_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^tfsfast\.__main__ is not an importable package$"):
        check_extensions.declared_modules("tfsfast.__main__")


@pytest.mark.skipif(DISABLED, reason="TFSFAST_NO_EXTENSIONS is set")
def test_this_build_has_every_compiled_module(capsys) -> None:
    assert check_extensions.main([]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    declared = check_extensions.declared_modules()
    assert [line.split()[:2] for line in lines[:-1]] == [["compiled", n] for n in declared]
    assert lines[-1] == f"check_extensions: all {len(declared)} compiled modules of tfsfast import"
    assert err == ""


def test_disabled_extensions_fail_the_check_as_a_command() -> None:
    env = {**os.environ, "TFSFAST_NO_EXTENSIONS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "tfsfast.check_extensions"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "check_extensions: TFSFAST_NO_EXTENSIONS is set: the server runs the pure-Python twins "
        "whatever is installed")
    # The modules are still listed, each with what an import found.
    declared = check_extensions.declared_modules()
    assert [line.split()[1] for line in result.stdout.splitlines()] == declared


def test_unknown_arguments_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check_extensions.main(["--package=tfsfast"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith(
        "python -m tfsfast.check_extensions: error: unrecognized arguments: --package=tfsfast\n")


# --- what the server says it runs -----------------------------------------------------------


@pytest.mark.parametrize(("disabled", "expected"), [
    (False, "pkg_pair.fast=compiled, pkg_pair.missing=twin"),
    (True, "pkg_pair.fast=twin, pkg_pair.missing=twin (TFSFAST_NO_EXTENSIONS is set)"),
], ids=["extensions", "no_extensions"])
def test_load_records_what_it_chose_for_the_startup_line(
        fake_package, monkeypatch: pytest.MonkeyPatch, disabled: bool, expected: str) -> None:
    # A plain module stands for a compiled one: load imports whatever has the compiled name.
    name = fake_package("pkg_pair", {"_fast.py": b"", "_fast_py.py": b"", "_missing_py.py": b""})
    monkeypatch.setattr(_extensions, "NO_EXTENSIONS", disabled)
    monkeypatch.setattr(_extensions, "_chosen", {})
    assert _extensions.implementations() == "none loaded" + (
        " (TFSFAST_NO_EXTENSIONS is set)" if disabled else "")
    fast = _extensions.load(f"{name}._fast", f"{name}._fast_py")
    missing = _extensions.load(f"{name}._missing", f"{name}._missing_py", warn=False)
    assert (fast.__name__, missing.__name__) == (
        f"{name}._fast_py" if disabled else f"{name}._fast", f"{name}._missing_py")
    assert _extensions.implementations() == expected
