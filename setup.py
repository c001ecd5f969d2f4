"""Build of tfsfast's compiled modules.

Every Cython source under ``tfsfast/`` becomes an extension, as ``tfsfast.check_extensions``'s
``cython_sources`` says (the installed package is checked by the same rule): a ``.pyx`` of the
same dotted name, and a ``.pxd`` beside a ``_py.py`` (``_run_cost.pxd``, ``_run_cost_py.py``)
makes the module of the ``.pxd``'s name (``_run_cost``) from the ``.py`` compiled with those C
declarations: one source, imported as the pure-Python twin and compiled. Modules that call
the TensorFlow C API (``tfsfast/runtime``) compile against the headers of the ``tensorflow``
wheel the build sees and link its ``libtensorflow_cc.so.2`` and ``libtensorflow_framework.so.2``.
``TFSFAST_NO_EXTENSIONS=1`` skips the build; the pure-Python twins are used then.

Where the runtime modules find those libraries when they run (their rpath):

- ``$ORIGIN/../../tensorflow`` always: installed, ``site-packages/tfsfast/runtime/_session*.so``
  reaches ``site-packages/tensorflow``, where the installed ``tensorflow`` requirement puts them.
  This is what a wheel carries, so it works in any environment that installs tfsfast and
  tensorflow into one site-packages (a venv, a container's Python), whatever its path.
- Only for modules built into the source tree (``pip install --no-build-isolation -e .`` and
  ``setup.py build_ext --inplace``, as ``make install`` does), where ``$ORIGIN`` leads nowhere:
  the absolute path of ``tensorflow`` in the site-packages of the environment the build runs for
  (pip runs even an isolated build with the target environment's interpreter), which is where
  the editable install will import it from. Never the path of the tensorflow the build linked,
  which an isolated build deletes afterwards (and a stale directory under /tmp in a search path
  is one anybody could create later), and never in a wheel.

So ``pip install .`` and ``pip wheel .`` work with pip's default build isolation: pyproject.toml
lists ``tensorflow`` among the build requirements (the same range as requirements.txt), pip
installs it into the build environment, and its cache serves the download to the install too.
Linking at build time, rather than resolving the C API at import time from the tensorflow the
process loaded, keeps the runtime a plain C extension of TensorFlow's documented C API, with its
headers as the compiler's check of every call; the price is TensorFlow in the build environment.

Every module compiles against numpy's headers (``numpy.get_include()`` of the numpy the build
sees; pyproject.toml lists numpy among the build requirements): the compiled modules reach numpy
through its documented C API, as ``cimport numpy`` declares it. Modules built against numpy 2's
headers run with numpy 1.x too (numpy's promise for 2.x builds), so requirements.txt's range
holds.

Rebuilds: every module depends on this file, and a runtime module on the libraries it linked,
so a change of flags here or a different tensorflow relinks it rather than reusing an
up-to-date-looking object in ``build/``. Cython tracks a ``.py`` source's declarations by the
``.py``'s own name, so for a module built from a ``_py.py`` the C that an older ``.pxd`` (or a
``.pxd`` it cimports) generated is deleted here, for Cython to generate it again. In-place
builds keep their modules apart from the others' (they link differently), in
``build/inplace-<python>``. A wheel build (``pip install .`` builds in the source tree) starts
from an empty ``build/lib*``: whatever an earlier build left there (a module since removed,
compiled modules in a build that skips them) would otherwise go into the wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
NO_EXTENSIONS = os.environ.get("TFSFAST_NO_EXTENSIONS", "").lower() not in ("", "0", "false", "no")
TENSORFLOW_LIBRARIES = ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2")
# numpy's C API without what it deprecated in 1.7 (direct access to the array struct's fields):
# the compiled modules use its functions and macros only (tfsfast/_cdefs/numpy_array.pxd).
NUMPY_API_VERSION = ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")


def tensorflow_dir() -> Path | None:
    """The directory of the tensorflow package the build sees (the isolated build environment's
    or the interpreter's own), found without importing it. It holds the shared libraries, and
    the C API headers under ``include/``."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


TENSORFLOW_DIR = tensorflow_dir()


def origin_rpath(module: str) -> str:
    """The rpath from ``module``'s installed directory to the sibling ``tensorflow`` package:
    ``$ORIGIN/../../tensorflow`` for ``tfsfast.runtime._session``."""
    return "$ORIGIN/" + "../" * module.count(".") + "tensorflow"


def links_tensorflow(ext: Extension) -> bool:
    return any(lib.lstrip(":") in TENSORFLOW_LIBRARIES for lib in ext.libraries)


def cython_sources() -> dict[str, Path]:
    """tfsfast's compiled modules and their sources, by ``tfsfast/check_extensions.py``'s rule.
    That file is loaded by its path: the package itself is not importable in a build."""
    spec = importlib.util.spec_from_file_location(
        "_tfsfast_check_extensions", ROOT / "tfsfast" / "check_extensions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclass
    spec.loader.exec_module(module)
    return module.cython_sources(ROOT / "tfsfast", "tfsfast")


def forget_stale_c(source: Path, pxd: Path) -> None:
    """Deletes the C that Cython generated from ``source``, a ``.py`` compiled with the
    declarations of ``pxd``, if ``pxd`` or a ``.pxd`` it cimports changed since."""
    from Cython.Build.Dependencies import create_dependency_tree

    c_file = source.with_suffix(".c")
    if not c_file.exists():
        return
    tree = create_dependency_tree()
    newest, _ = tree.newest_dependency(str(pxd.relative_to(ROOT)))
    if newest > c_file.stat().st_mtime:
        c_file.unlink()


def extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        return []
    import numpy
    from Cython.Build import cythonize

    exts = []
    for name, source in cython_sources().items():
        rel = source.relative_to(ROOT)
        kwargs: dict = {"include_dirs": ["csrc", numpy.get_include()],
                        "define_macros": [NUMPY_API_VERSION], "extra_compile_args": ["-O3"],
                        "depends": ["setup.py"]}
        if source.suffix == ".py":
            pxd = ROOT.joinpath(*name.split(".")).with_suffix(".pxd")
            forget_stale_c(source, pxd)
        if rel.parts[1] == "runtime":
            if TENSORFLOW_DIR is None:
                sys.stderr.write(f"tfsfast: tensorflow is not installed; skipping {name}\n")
                continue
            kwargs["include_dirs"] += [str(TENSORFLOW_DIR / "include")]
            kwargs["library_dirs"] = [str(TENSORFLOW_DIR)]
            kwargs["libraries"] = [f":{lib}" for lib in TENSORFLOW_LIBRARIES]
            kwargs["runtime_library_dirs"] = [origin_rpath(name)]
            kwargs["depends"] += [str(TENSORFLOW_DIR / lib) for lib in TENSORFLOW_LIBRARIES]
        exts.append(Extension(name, [str(rel)], **kwargs))
    # C types come from .pxd files and cdef declarations, never from annotations: in a .py
    # compiled with a .pxd the annotations are the Python twin's, for readers and type checkers,
    # and Cython reading them (an ``int`` argument becomes an exact int, ``float`` a C double)
    # would make the compiled module accept other arguments than its twin.
    return cythonize(exts, language_level=3, quiet=True,
                     compiler_directives={"embedsignature": True, "annotation_typing": False})


class BuildExt(build_ext):
    """``build_ext`` that gives modules built into the source tree the absolute rpath too."""

    def finalize_options(self) -> None:
        super().finalize_options()
        # setuptools' run() clears ``inplace`` while it compiles (into build_lib, then copies).
        self.into_source_tree = bool(self.inplace)
        if self.into_source_tree:
            # Apart from wheel builds (they link differently), and shared by the editable
            # install and `build_ext --inplace`, so `make build` after `make install` is a no-op.
            self.build_lib = str(ROOT / "build" / f"inplace-{sys.implementation.cache_tag}")

    def build_extension(self, ext: Extension) -> None:
        if self.into_source_tree and links_tensorflow(ext):
            installed = str(Path(sysconfig.get_paths()["platlib"]) / "tensorflow")
            if installed not in ext.runtime_library_dirs:
                ext.runtime_library_dirs.append(installed)
        super().build_extension(ext)


class CleanBuild(build):
    """``build`` into an emptied ``build_lib``: bdist_wheel packs all of that directory."""

    def run(self) -> None:
        shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()


setup(
    ext_modules=extensions(),
    cmdclass={"build": CleanBuild, "build_ext": BuildExt},
    # The modules compile independently, and compiling them one after another was half of what
    # `pip install .` took (66 s of 114 s on 2 cores; 37 s side by side).
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
)
