"""``python -m bench rest_instructions``: instructions per REST predict on the event loop.

``bench http`` measures the whole server, kernel included, and moves by half between runs on a
shared machine; this counts what the server's own code does per request, which two runs give to
~1%. In one process, without sockets: a ServerCore loads half_plus_two (TF Serving's test export,
or the same model exported here), and ``--connections`` compiled HTTP protocols with the compiled
REST fast path each receive one ``POST /v1/models/m:predict`` of ``{"instances": [[1.0],[2.0],
[5.0]]}`` per loop turn (the bytes wrk sends), on a transport that only counts its writes. Every
answer is awaited before the next turn. Two cases:

- ``batching``: ``--enable_batching`` (``max_batch_size`` 1024, ``batch_timeout_micros`` 0):
  each turn's requests are one batch run on the loop;
- ``inline``: batching off: each request runs on the loop by itself.

Counted: the main thread's instructions inside the timed ``run_until_complete`` (callgrind with
``--separate-threads``, instrumentation switched on after the model loaded and the connections
warmed up), divided by the requests, so the HTTP scanning, JSON parse and format, handle-table
read, batching, TF run and the answer's bytes. Not counted: the kernel, uvloop's socket reads
and writes. The harness itself adds a few hundred instructions a request (its loop and the
fake transport's Python ``write``). Runs are kept on the loop however slow valgrind makes them
(``INLINE_RUN_MAX_SECONDS`` raised), as in the server when runs take microseconds.

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

CASES = ("batching", "inline")

_CHILD = r'''
import asyncio, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import uvloop
from tfsfast.batching import batching_parameters as bp
from tfsfast.servables import saved_model_bundle
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import _http_protocol, rest_fast_path
from tfsfast.server.http.http_protocol import HttpServerLimits
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions

export_dir, case, connections, turns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
saved_model_bundle.INLINE_RUN_MAX_SECONDS = 1.0
base = Path(tempfile.mkdtemp()) / "m"
shutil.copytree(export_dir, base / "1")
config = mc.parse_model_server_config(
    f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
    f'model_platform: "tensorflow" }} }}')
params = (bp.parse_batching_parameters("max_batch_size { value: 1024 } "
                                       "batch_timeout_micros { value: 0 }")
          if case == "batching" else None)
core = ServerCore.create(ServerCoreOptions(
    model_server_config=config, file_system_poll_wait_seconds=0,
    session_bundle_config=SessionBundleConfig(enable_model_warmup=False,
                                              batching_parameters=params)))
BODY = b'{"instances": [[1.0],[2.0],[5.0]]}'
REQUEST = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1:8501\r\n"
           b"Content-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(BODY)) + BODY


class Transport:
    def __init__(self):
        self.writes = 0
        self.last = b""
    def write(self, data):
        self.writes += 1
        self.last = data
    def is_closing(self):
        return False
    def close(self):
        pass
    def get_extra_info(self, *args, **kwargs):
        return None
    def pause_reading(self):
        pass
    def resume_reading(self):
        pass


async def turns_of(pairs, count):
    want = pairs[0][1].writes
    for _ in range(count):
        want += 1
        for protocol, transport in pairs:
            protocol.data_received(REQUEST)
        while pairs[-1][1].writes < want or pairs[0][1].writes < want:
            await asyncio.sleep(0)


async def make():
    fast = rest_fast_path.for_core(core, RestApiOptions())
    handler = HttpRestApiHandler(core)
    pairs = []
    for _ in range(connections):
        protocol = _http_protocol.HttpProtocol(handler, HttpServerLimits(), lambda m: b"{}",
                                               None, fast)
        transport = Transport()
        protocol.connection_made(transport)
        pairs.append((protocol, transport))
    await turns_of(pairs, 300)
    return pairs


loop = uvloop.new_event_loop()
asyncio.set_event_loop(loop)
pairs = loop.run_until_complete(make())
assert pairs[0][1].last.endswith(b'{"predictions": [[2.5], [3.0], [4.5]]}'), pairs[0][1].last
scanned = sum(p.scanned_requests for p, t in pairs)
subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
               capture_output=True)
sum(range(3_000_000))  # work outside the loop while callgrind takes the command in
loop.run_until_complete(turns_of(pairs, turns))
assert sum(p.scanned_requests for p, t in pairs) - scanned == connections * turns
core.stop()
'''


def _model(work: Path) -> Path:
    from bench.runtime import TESTDATA_HALF_PLUS_TWO

    if TESTDATA_HALF_PLUS_TWO.is_dir():
        return TESTDATA_HALF_PLUS_TWO
    from tfsfast.testing import runtime_models

    return Path(runtime_models.export_half_plus_two_tf1(str(work / "hp2")))


def _inclusive(annotated: str, pattern: str) -> int:
    """The largest inclusive count callgrind_annotate gives a function matching ``pattern``."""
    best = 0
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+)\s.*" + pattern, line)
        if match:
            best = max(best, int(match.group(1).replace(",", "")))
    return best


def count(case: str, export_dir: Path, connections: int, turns: int,
          work: Path) -> dict[str, float]:
    script = work / f"{case}.py"
    script.write_text(_CHILD)
    out = work / f"{case}.callgrind"
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
         "--separate-threads=yes", "--toggle-collect=*run_until_complete*",
         f"--callgrind-out-file={out}", sys.executable, str(script), str(export_dir), case,
         str(connections), str(turns)],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    main_thread = next(p for p in sorted(work.glob(f"{case}.callgrind*")) if p.name.endswith("-01"))
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(main_thread)],
                               check=True, capture_output=True, text=True).stdout
    requests = connections * turns
    total = _inclusive(annotated, r"run_until_complete\s")
    session_run = _inclusive(annotated, r"TF_SessionRun\s")
    return {"instructions_per_request": round(total / requests),
            "tf_session_run_per_request": round(session_run / requests)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rest_instructions",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32, help="requests per loop turn")
    parser.add_argument("--turns", type=int, default=200, help="loop turns counted per case")
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
            result[case] = count(case, export_dir, args.connections, args.turns, work)
            print(f"{case:<10} {result[case]['instructions_per_request']:>8} "
                  f"instructions/request (TF_SessionRun "
                  f"{result[case]['tf_session_run_per_request']})", flush=True)
    print(json.dumps({"model": "half_plus_two", "connections": args.connections,
                      "cases": result}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
