"""Runs ``tritonclient.grpc`` code in a child Python process, for tests.

Triton's generated gRPC modules add the Open Inference Protocol's messages to protobuf's
default descriptor pool, where the KServe SDK, which other tests of the same run import, defines
the same symbols in another file; one process cannot hold both. ``run`` executes a snippet in a
child with ``client`` (an ``InferenceServerClient`` of the target), ``np``, ``triton``
(``tritonclient.grpc``), ``error(call)`` (a failing call's ``(status, message)``, None if it
did not fail), ``tensor(name, array, datatype)`` and ``outputs(result)``, and hands back the
value of the snippet's ``result`` (a literal).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from typing import Any

__all__ = ["run"]

_PRELUDE = """\
import sys
import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

client = triton.InferenceServerClient(sys.argv[1])


def error(call):
    try:
        call()
    except InferenceServerException as e:
        return (e.status(), e.message())
    return None


def tensor(name, array, datatype):
    t = triton.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return t


def outputs(result):
    response = result.get_response()
    return [(o.name, o.datatype, list(o.shape), result.as_numpy(o.name).tolist())
            for o in response.outputs]


"""



def run(target: str, snippet: str) -> Any:
    """The ``result`` of ``snippet`` run in a child with a client of ``target`` (host:port);
    AssertionError with the child's stderr when it fails."""
    code = _PRELUDE + textwrap.dedent(snippet) + "\nprint(repr(result))\n"
    child = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True,
                           check=False)
    assert child.returncode == 0, child.stderr
    return ast.literal_eval(child.stdout.splitlines()[-1])
