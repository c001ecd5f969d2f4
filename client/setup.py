"""Build of ``tfsfast-client``: ``tfsfast.client`` and what it imports of tfsfast, without
TensorFlow.

The modules are the repository's own files (``../tfsfast``), not copies kept here: the build
stages the ones the client imports into ``build/staged`` and packages them from there, so the
client always ships the codec the server it is tested with runs. Build it from the repository
(``pip install ./client``, ``pip wheel ./client``); an sdist of this directory alone would not
hold the sources.

The gRPC clients encode and decode tensors with the server's TensorProto codec, whose
pure-Python twin parses with TensorFlow's protos; so this build compiles the codec
(``tfsfast/codecs/_tensor_proto.pyx``), which needs only Cython, Python's and numpy's headers
(as the server's build compiles it, ``setup.py`` at the repository's root), and a failed compile
fails the install rather than leave a client that cannot decode a response. The package's
``.pxd`` declarations are staged too, with the ``__init__.py`` of their packages (the codec
cimports them), but only the modules in ``MODULES`` go into the wheel.

Installed beside the ``tfsfast`` distribution the two would write the same files: install
``tfsfast`` where the server runs (it ships ``tfsfast.client`` too) and ``tfsfast-client``
everywhere else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
STAGED = HERE / "build" / "staged"

# The modules ``tfsfast.client`` imports, by package; "*" is every module of the package.
MODULES: dict[str, tuple[str, ...]] = {
    "tfsfast": ("__init__.py", "_extensions.py"),
    "tfsfast.client": ("*",),
    "tfsfast.codecs": ("__init__.py", "codec_limits.py", "tensor_proto.py",
                       "_tensor_proto_py.py"),
    "tfsfast.runtime": ("__init__.py", "dtypes.py"),
    "tfsfast.util": ("__init__.py", "proto_wire.py", "status.py"),
}
CODEC = "tfsfast.codecs._tensor_proto"


def stage() -> None:
    """Copies the modules, every ``.pxd`` of the package and ``csrc``'s headers into
    ``STAGED``, afresh."""
    source = REPOSITORY / "tfsfast"
    if not (source / "codecs" / "_tensor_proto.pyx").is_file():
        raise SystemExit(f"tfsfast-client builds from the tfsfast repository; {source} does not "
                         "hold its sources (run pip install ./client in a checkout)")
    shutil.rmtree(STAGED, ignore_errors=True)
    for package, names in MODULES.items():
        directory = REPOSITORY.joinpath(*package.split("."))
        files = sorted(directory.glob("*.py")) if names == ("*",) else [
            directory / name for name in names]
        for path in files:
            target = STAGED / path.relative_to(REPOSITORY)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    declarations = sorted(source.rglob("*.pxd"))
    packages = {p.parent / "__init__.py" for p in declarations} - {source / "__init__.py"}
    for path in [*declarations, *sorted(p for p in packages if p.is_file()),
                 source / "codecs" / "_tensor_proto.pyx", *(REPOSITORY / "csrc").glob("*.h")]:
        target = STAGED / path.relative_to(REPOSITORY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def version() -> str:
    for line in (REPOSITORY / "tfsfast" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit("tfsfast/__init__.py has no __version__")


stage()
codec = Extension(CODEC, [str(Path("build", "staged", *CODEC.split(".")).with_suffix(".pyx"))],
                  include_dirs=[str(Path("build", "staged", "csrc")), numpy.get_include()],
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                  extra_compile_args=["-O3"])
setup(
    version=version(),
    packages=list(MODULES),
    package_dir={"": str(Path("build", "staged"))},
    ext_modules=cythonize([codec], language_level=3, quiet=True,
                          include_path=[str(STAGED)],
                          compiler_directives={"embedsignature": True,
                                               "annotation_typing": False}),
)
