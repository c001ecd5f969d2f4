"""The one switch between compiled modules and their pure-Python twins.

Set ``TFSFAST_NO_EXTENSIONS=1`` to use the Python twins everywhere (the reference
implementations that the compiled ones are tested against). Without it, a compiled module that
failed to build or import falls back to its twin with a warning; ``python -m
tfsfast.check_extensions`` turns that into a failed build where it must not happen (and the
tests into an error).

Every compiled module ``_x`` has a twin ``_x_py`` and a façade that picks one, all in the same
shape::

    _impl = _extensions.load("pkg._x", "pkg._x_py")
    IMPLEMENTATION: str = _extensions.implementation(_impl)  # "compiled" or "python"

    if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
        from pkg._x_py import Thing  # a type checker sees the twin's signatures
    else:
        Thing = _impl.Thing

The twin either *is* the compiled module's source (one ``.py`` compiled with a ``.pxd`` of the
compiled name) or a separate algorithm in Python (a ``.pyx`` beside it); each says which at its
top.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

NO_EXTENSIONS = os.environ.get("TFSFAST_NO_EXTENSIONS", "").strip().lower() not in (
    "", "0", "false", "no")

# What each load() chose, by compiled module name: "compiled" or "twin".
_chosen: dict[str, str] = {}


def load(compiled: str, python: str, warn: bool = True) -> ModuleType:
    """Imports the compiled module ``compiled`` unless disabled or missing, else ``python``.

    ``warn=False`` is for a twin whose compiled module is not written yet: its absence is then
    silent. A compiled module that exists but fails to import still warns.
    """
    if not NO_EXTENSIONS:
        try:
            module = importlib.import_module(compiled)
        except ImportError as e:
            absent = isinstance(e, ModuleNotFoundError) and e.name == compiled
            if warn or not absent:
                warnings.warn(f"tfsfast: compiled module {compiled} unavailable ({e}); using the "
                              f"pure-Python {python}", RuntimeWarning, stacklevel=2)
        else:
            _chosen[compiled] = "compiled"
            return module
    module = importlib.import_module(python)
    _chosen[compiled] = "twin"
    return module


def implementation(module: ModuleType) -> str:
    """``"compiled"`` or ``"python"``: what ``module``, one that ``load`` returned, runs (twins
    are the modules named ``_x_py``)."""
    return "python" if module.__name__.endswith("_py") else "compiled"


def implementations() -> str:
    """What the modules loaded so far run, for the server's startup log: one
    ``<family>=compiled`` or ``<family>=twin`` per module family (``codecs.json`` for
    ``tfsfast.codecs._json``), sorted; families not loaded yet are not listed."""
    families = []
    for compiled, chosen in sorted(_chosen.items()):
        package, _, name = compiled.removeprefix("tfsfast.").rpartition(".")
        families.append(f"{package}.{name.lstrip('_')}={chosen}")
    text = ", ".join(families) or "none loaded"
    return f"{text} (TFSFAST_NO_EXTENSIONS is set)" if NO_EXTENSIONS else text
