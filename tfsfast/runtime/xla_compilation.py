"""XLA JIT compilation, allowed or refused for the whole process (TensorFlow's
``tensorflow::DisableXlaCompilation`` in ``compiler/jit/flags.h``).

TF Serving's ``main.cc`` calls ``DisableXlaCompilation()`` before it builds the server unless
``--xla_cpu_compilation_enabled`` or ``--xla_gpu_compilation_enabled`` is set: XLA is opt-in, and
a model that asks for it (a ``jit_compile=True`` function, an XLA cluster) fails its first run
with INTERNAL ``XLA compilation disabled``. Setting either flag only lifts that refusal; neither
turns on auto-clustering (``OptimizerOptions.global_jit_level``), which stays whatever the
session config file says.

TensorFlow has no Python API for the switch, so it is called in ``libtensorflow_cc.so.2``, the
library both runtime implementations run sessions with (the process-wide flag lives there). The
C++ symbol is looked up by its mangled name: ``void tensorflow::DisableXlaCompilation()`` and
``bool tensorflow::FailOnXlaCompilation()`` take no arguments, so the names are stable.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
from functools import cache
from typing import Any

_log = logging.getLogger(__name__)

_LIBRARY = "libtensorflow_cc.so.2"
_DISABLE = "_ZN10tensorflow21DisableXlaCompilationEv"
_FAIL_ON = "_ZN10tensorflow20FailOnXlaCompilationEv"


@cache
def _tensorflow_library() -> ctypes.CDLL | None:
    """TensorFlow's C++ library (the copy already loaded, when it is), or None if not found."""
    spec = importlib.util.find_spec("tensorflow")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = os.path.join(location, _LIBRARY)
        if os.path.exists(path):
            return ctypes.CDLL(path)
    return None


def _function(name: str) -> Any:
    """The library's function ``name``, or None."""
    library = _tensorflow_library()
    if library is None:
        return None
    try:
        return getattr(library, name)
    except AttributeError:
        return None


def disable_xla_compilation() -> bool:
    """Refuses XLA compilation in this process from now on; True once it is refused.

    False, with an error logged, when this TensorFlow does not have the switch: XLA then stays
    available (as with the flags set), which the log says.
    """
    disable = _function(_DISABLE)
    if disable is None:
        _log.error("Could not disable XLA compilation: %s has no tensorflow::"
                   "DisableXlaCompilation; models that ask for XLA will compile it as with "
                   "--xla_cpu_compilation_enabled", _LIBRARY)
        return False
    disable.restype = None
    disable()
    return True


def xla_compilation_disabled() -> bool:
    """Whether XLA compilation is refused in this process (``FailOnXlaCompilation``)."""
    fail_on = _function(_FAIL_ON)
    if fail_on is None:
        return False
    fail_on.restype = ctypes.c_bool
    return bool(fail_on())
