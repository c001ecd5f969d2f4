"""``python -m bench runtime_instructions``: instructions per ``SavedModelSession.run``.

Wall time on a shared 2-core machine moves by ±20% from run to run; instruction counts do not
(two runs agree to ~0.3%), so they are the figure to compare a change of the runtime's per-call
cost by. For half_plus_two (TF Serving's test export, or the same model exported here) fed a
3x1 float32 array, it counts the instructions of ``--calls`` runs of the compiled runtime, in
three forms:

- ``plain``: ``run("serving_default", {"x": x})``, the benchmark's and a plain predict's call;
- ``selection``: the same with ``output_aliases=["y"]``;
- ``timeout``: the same with ``timeout_in_ms=30000``, as the REST API passes by default
  (TensorFlow then runs the graph asynchronously and waits on a notification).

Each figure is everything done inside one C call that makes all the runs (``collections.deque``
consuming an ``itertools.starmap``): the argument handling, ``TF_SessionRun``, building the
outputs and freeing them, divided by the number of runs. ``TF_SessionRun``'s own share is given
next to it: what is left is the wrapper's. The model is loaded with instrumentation off (so a
case takes about a minute and a half, not five) and warmed up before counting.

Needs ``valgrind`` (callgrind) on PATH; prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "plain": "('serving_default', {'x': x})",
    "selection": "('serving_default', {'x': x}, ['y'], 0)",
    "timeout": "('serving_default', {'x': x}, None, 30000)",
}

# Runs the calls under callgrind: instrumentation is switched on (callgrind_control) only after
# the model is loaded, and counting happens only inside consume_iterator, i.e. inside the deque
# call that makes every counted run.
_CHILD = """
import os, subprocess, sys
from collections import deque
from itertools import repeat, starmap
import numpy as np
from tfsfast.runtime import _session, arrays
from tfsfast.runtime.session_options import server_session_config
session = _session.load_saved_model(sys.argv[1], ["serve"],
                                    server_session_config().SerializeToString())
x = arrays.aligned_empty((3, 1), np.float32)
x[:] = [[1.0], [2.0], [5.0]]
args = {args}
subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
               capture_output=True)
for _ in range(200):
    session.run(*args)
deque(starmap(session.run, repeat(args, int(sys.argv[2]))), maxlen=0)
"""


def _model(work: Path) -> Path:
    from bench.runtime import TESTDATA_HALF_PLUS_TWO

    if TESTDATA_HALF_PLUS_TWO.is_dir():
        return TESTDATA_HALF_PLUS_TWO
    from tfsfast.testing import runtime_models

    return Path(runtime_models.export_half_plus_two_tf1(str(work / "hp2")))


def _inclusive(annotated: str, symbol: str) -> int:
    """The inclusive instruction count callgrind_annotate gives the function ``symbol``."""
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+)\s.*[:\s]" + re.escape(symbol) + r"\s\[", line)
        if match:
            return int(match.group(1).replace(",", ""))
    return 0


def count(case: str, export_dir: Path, calls: int, work: Path) -> dict[str, float]:
    """Instructions per run, in all and inside TF_SessionRun, for one case."""
    script = work / f"{case}.py"
    script.write_text(_CHILD.format(args=CASES[case]))
    out = work / f"{case}.callgrind"
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
         "--toggle-collect=consume_iterator", f"--callgrind-out-file={out}", sys.executable,
         str(script), str(export_dir), str(calls)],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                               check=True, capture_output=True, text=True).stdout
    total = _inclusive(annotated, "consume_iterator")
    session_run = _inclusive(annotated, "TF_SessionRun")
    return {"instructions_per_run": round(total / calls),
            "tf_session_run_per_run": round(session_run / calls),
            "wrapper_per_run": round((total - session_run) / calls)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench runtime_instructions",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="runs counted per case")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    args = parser.parse_args(argv)
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        print("valgrind (callgrind) is not installed; nothing measured", file=sys.stderr)
        return 0
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tfsfast-callgrind-") as tmp:
        work = Path(tmp)
        export_dir = _model(work)
        for case in args.cases.split(","):
            result[case] = count(case, export_dir, args.calls, work)
            print(f"{case:<10} {result[case]['instructions_per_run']:>8} instructions/run "
                  f"(TF_SessionRun {result[case]['tf_session_run_per_run']}, "
                  f"wrapper {result[case]['wrapper_per_run']})", flush=True)
    print(json.dumps({"model": "half_plus_two", "input": "float32[3,1]", "cases": result},
                     sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
