"""``python -m tfsfast.check_extensions``: does this installation run its compiled modules?

Where a compiled module is missing or fails to import, tfsfast runs its pure-Python twin (see
:mod:`tfsfast._extensions`): correct, slower, and announced only by a warning in the server's
log. A build that must not ship that (a container image, a wheel's smoke test) runs this command:
it imports every compiled module the package declares, prints one line per module, and exits 1
naming those that are missing or fail to import.

The declared modules are the package's own Cython sources, which it ships as package data
(:func:`cython_sources`, which ``setup.py`` builds from too): ``tfsfast/codecs/_json.pyx``
declares ``tfsfast.codecs._json``, and ``tfsfast/util/_run_cost.pxd`` beside
``tfsfast/util/_run_cost_py.py`` declares ``tfsfast.util._run_cost`` (the Python module compiled
with those declarations). A new source is checked without a list to update. Each line is
``<status> <module> <detail>``:

- ``compiled``: imported from a compiled extension; the detail is its file.
- ``missing``: no module of that name (the build skipped or lost it).
- ``failed``: a compiled file is there but its import raised (an unresolved library, an ABI
  mismatch); the detail is the error.
- ``not-compiled``: the name imported from something other than an extension (a stray ``.py``).

``TFSFAST_NO_EXTENSIONS`` set in the environment also fails the check: the server would then run
the twins whatever is installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["PACKAGE", "ModuleStatus", "check", "check_module", "cython_sources",
           "declared_modules", "main"]

PACKAGE = "tfsfast"

Status = Literal["compiled", "missing", "failed", "not-compiled"]


@dataclass(frozen=True)
class ModuleStatus:
    name: str
    status: Status
    detail: str  # the extension file when compiled, else why not

    @property
    def ok(self) -> bool:
        return self.status == "compiled"


def cython_sources(root: Path, package: str) -> dict[str, Path]:
    """The compiled modules of the package ``package`` whose directory is ``root``, each with
    the file Cython compiles into it, by module name (sorted):

    - ``x.pyx`` becomes the module ``x``;
    - ``x.pxd`` beside ``x_py.py`` (and no ``x.pyx``) makes ``x`` the Python module ``x_py``
      compiled with the C declarations of ``x.pxd`` (Cython's pure Python mode): one source
      built twice, the compiled module and its twin. A ``.pxd`` without such a ``.py`` only
      declares (C functions, or a ``.pyx``'s types).

    ``setup.py`` builds exactly these (it loads this file by path); :func:`declared_modules`
    checks that they were."""
    sources = {}
    for path in root.rglob("*"):
        if path.suffix == ".pyx":
            source = path
        elif path.suffix == ".pxd" and not path.with_suffix(".pyx").exists():
            source = path.with_name(path.stem + "_py.py")
            if not source.is_file():
                continue
        else:
            continue
        parts = path.relative_to(root).with_suffix("").parts
        sources[".".join((package, *parts))] = source
    return dict(sorted(sources.items()))


def declared_modules(package: str = PACKAGE) -> list[str]:
    """The compiled modules ``package`` should have (:func:`cython_sources` of each of its
    directories), sorted. Empty when the package ships no Cython sources."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ValueError(f"{package} is not an importable package")
    names: set[str] = set()
    for location in spec.submodule_search_locations:
        names.update(cython_sources(Path(location), package))
    return sorted(names)


def check_module(name: str) -> ModuleStatus:
    """Imports ``name`` and says whether it came from a compiled extension."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return ModuleStatus(name, "missing", str(e))
        return ModuleStatus(name, "failed", f"{type(e).__name__}: {e}")
    # Whatever a module's initialisation raises (ImportError for an unresolved library, but
    # also e.g. ValueError for a numpy ABI mismatch) means the server would run the twin.
    except Exception as e:
        return ModuleStatus(name, "failed", f"{type(e).__name__}: {e}")
    origin = getattr(module.__spec__, "origin", None) or ""
    if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return ModuleStatus(name, "compiled", origin)
    return ModuleStatus(name, "not-compiled", f"imported from {origin or 'no file'}")


def check(package: str = PACKAGE) -> list[ModuleStatus]:
    """The status of every module :func:`declared_modules` lists, in its order."""
    return [check_module(name) for name in declared_modules(package)]


def main(argv: Sequence[str] | None = None, package: str = PACKAGE) -> int:
    """Prints each module's status (stdout), then any failure (stderr); 0 only if every declared
    module is compiled and the environment does not disable them."""
    # Not at the top: setup.py loads this file, outside the package, for cython_sources.
    from tfsfast import _extensions

    parser = argparse.ArgumentParser(
        prog="python -m tfsfast.check_extensions",
        description=f"Imports every compiled module of {package} (one per Cython source it "
                    "ships) and exits 1 if any is missing or fails to import, or if "
                    "TFSFAST_NO_EXTENSIONS disables them.")
    parser.parse_args(argv)
    # TensorFlow's C++ start-up chatter would bury the table (the runtime module loads it).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    statuses = check(package)
    width = max((len(s.name) for s in statuses), default=0)
    for s in statuses:
        print(f"{s.status:<12} {s.name:<{width}}  {s.detail}")
    sys.stdout.flush()

    problems = []
    if not statuses:
        problems.append(f"{package} ships no Cython sources (.pyx, or .pxd beside a _py.py), "
                        "so which compiled modules it should have is unknown (was it installed "
                        "without its package data?)")
    unavailable = [s.name for s in statuses if not s.ok]
    if unavailable:
        problems.append(f"{len(unavailable)} of {len(statuses)} compiled modules unavailable, "
                        f"the server would run their pure-Python twins: {', '.join(unavailable)}")
    if _extensions.NO_EXTENSIONS:
        problems.append("TFSFAST_NO_EXTENSIONS is set: the server runs the pure-Python twins "
                        "whatever is installed")
    for problem in problems:
        print(f"check_extensions: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_extensions: all {len(statuses)} compiled modules of {package} import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
