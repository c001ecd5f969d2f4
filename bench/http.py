"""``python -m bench http``: end-to-end REST throughput of tfsfast against the usual baselines.

Every server runs half_plus_two (``saved_model_half_plus_two_cpu`` from ``../shared/testdata``,
or the same model exported with TensorFlow when that is absent) pinned to one core; ``wrk`` runs
on the other core, one thread, POSTing ``{"instances": [[1.0],[2.0],[5.0]]}`` at concurrency 1,
32 and 256. Servers: a uvloop + httptools protocol answering a fixed body (the ceiling),
gunicorn with 2 workers running Flask + a TF session, FastAPI + uvicorn + a TF session, and
tfsfast with batching off and on, each also with ``--monitoring_config_file`` serving the
Prometheus page (``tfsfast_metrics``, ``tfsfast_batching_metrics``; ``metrics_on_over_off_c32``
and ``metrics_on_over_off_batching_c32`` are their requests/s over the plain rows', target
>= 0.97). The last line is a JSON object with every figure and the ratios the project tracks.
Absolute numbers move between runs on shared machines; compare the ratios.

Options: ``--duration S`` (default 5), ``--concurrency 1,32,256``, ``--only a,b``, ``--rounds N``
(default 1). With N rounds every server is started and measured N times, the servers taking
turns, and each (server, concurrency) keeps its round with the most requests/s (its p50 and p99
are that round's). On a shared machine a neighbour's burst can take a server's core for tens of
seconds, the baselines' as well as tfsfast's; interleaved rounds give every server the same
chances of a quiet window, and the ratios compare best with best. Each line also shows the
hypervisor's steal time during its window (``StealMeter``): a figure of more than a few percent
means the window measured the neighbours as much as the server.

``--paired N`` measures the metrics on/off ratios the steadier way, for a cost of a few percent
that best-of rounds cannot resolve: the two servers of a pair run at once, ``wrk`` alternates N
bursts of ``--duration`` seconds at c32 between them (which goes first alternates too), and the
ratio is the median of the N paired ratios; a neighbour's burst then hits both sides of a pair.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench._common import (
    MONITORING_CONFIG,
    REPO,
    StealMeter,
    free_port,
    model_base_path,
    paired_bursts,
    pin,
)

BODY = b'{"instances": [[1.0],[2.0],[5.0]]}'
EXPECTED = [[2.5], [3.0], [4.5]]
BATCHING_PARAMETERS = """\
max_batch_size { value: 1024 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 1 }
"""


def ensure_wrk() -> None:
    """wrk from Debian's packages, installed if missing."""
    if shutil.which("wrk") is None:
        print("installing wrk (apt-get)...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def ensure_tools() -> None:
    """wrk and the baselines' Python packages, installed if missing."""
    ensure_wrk()
    try:
        import fastapi  # noqa: F401
        import flask  # noqa: F401
        import gunicorn  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("installing the baselines' packages (requirements-bench.txt)...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                        str(REPO / "requirements-bench.txt")], check=True)


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.process = subprocess.Popen([*pin(1), *argv], env=env, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self.url = f"http://127.0.0.1:{port}/v1/models/m:predict"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.process.stderr.read().decode()}")
            try:
                request = urllib.request.Request(
                    self.url, data=BODY, method="POST",
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
                if answer["predictions"] != EXPECTED:
                    raise RuntimeError(f"{self.name} answered {answer}")
                return
            except (OSError, ValueError):
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def servers(base: Path, workdir: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    version_dir = str(next(p for p in sorted(base.iterdir()) if p.name.isdigit()))
    py = sys.executable
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BENCH_MODEL_DIR": version_dir,
           "PYTHONPATH": str(REPO)}
    batching = workdir / "batching.pbtxt"
    batching.write_text(BATCHING_PARAMETERS)
    monitoring = workdir / "monitoring_config.txt"
    monitoring.write_text(MONITORING_CONFIG)
    metrics = f"--monitoring_config_file={monitoring}"
    tfsfast = [py, "-m", "tfsfast", "--model_name=m", f"--model_base_path={base}",
               "--port={grpc}", "--rest_api_port={port}"]
    batched = [*tfsfast, "--enable_batching", f"--batching_parameters_file={batching}"]
    return {
        "ceiling": ([py, "-m", "bench.http_baselines.ceiling", "{port}"], env),
        "gunicorn_flask": ([py, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}",
                            "--log-level", "warning", "bench.http_baselines.flask_app:app"], env),
        "fastapi_uvicorn": ([py, "-m", "uvicorn", "bench.http_baselines.fastapi_app:app",
                             "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
                             "--log-level", "warning", "--no-access-log"], env),
        "tfsfast": (tfsfast, env),
        "tfsfast_metrics": ([*tfsfast, metrics], env),
        "tfsfast_batching": (batched, env),
        "tfsfast_batching_metrics": ([*batched, metrics], env),
    }


_LATENCY_RE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, connections: int, duration: float, script: Path) -> dict[str, float]:
    argv = [*pin(0), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency",
            "-s", str(script), url]
    steal = StealMeter()
    steal.start()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    steal_percent = steal.percent()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY_RE.findall(out)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {"rps": round(rps, 1), "p50_ms": round(latency.get("50", float("nan")), 3),
            "p99_ms": round(latency.get("99", float("nan")), 3),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(0) if socket_errors else "",
            "steal_percent": steal_percent}


def paired_ratio(table: dict[str, tuple[list[str], dict[str, str]]], off: str, on: str,
                 bursts: int, duration: float, script: Path) -> float:
    """``on``'s requests/s over ``off``'s at c32, both servers up at once: the median of
    ``bursts`` alternating pairs of ``duration``-second bursts (see the module docstring)."""
    servers = []
    try:
        for name in (off, on):
            template, env = table[name]
            port, grpc = free_port(), free_port()
            servers.append(Server(name, [a.format(port=port, grpc=grpc) for a in template],
                                  port, env))
        for server in servers:
            server.wait_ready()
            run_wrk(server.url, 8, 1.0, script)  # warm up
        off_server, on_server = servers
        return paired_bursts(lambda: run_wrk(on_server.url, 32, duration, script),
                             lambda: run_wrk(off_server.url, 32, duration, script), bursts)[0]
    finally:
        for server in servers:
            server.stop()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench http")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,32,256")
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--paired", type=int, default=0)
    args = parser.parse_args(argv)
    ensure_tools()
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.body = \'' + BODY.decode() + "'\n"
                          'wrk.headers["Content-Type"] = "application/json"\n')
        base = model_base_path(workdir)
        table = servers(base, workdir)
        names = [n for n in table if not args.only or n in args.only.split(",")]
        paired: dict[str, float] = {}
        for off, on in (("tfsfast", "tfsfast_metrics"),
                        ("tfsfast_batching", "tfsfast_batching_metrics")):
            if args.paired and off in names and on in names:
                paired[on] = paired_ratio(table, off, on, args.paired, args.duration, script)
                print(f"paired {on} / {off} c=32: median of {args.paired} bursts "
                      f"{paired[on]:.3f}", flush=True)
        for round_ in range(args.rounds):
            for name in names:
                template, env = table[name]
                port, grpc = free_port(), free_port()
                argv_ = [a.format(port=port, grpc=grpc) for a in template]
                server = Server(name, argv_, port, env)
                try:
                    server.wait_ready()
                    run_wrk(server.url, 8, 1.0, script)  # warm up
                    kept = results.setdefault(name, {})
                    for c in levels:
                        r = run_wrk(server.url, c, args.duration, script)
                        best = kept.get(f"c{c}")
                        if best is None or r["rps"] > best["rps"]:
                            kept[f"c{c}"] = r
                        prefix = f"round {round_ + 1} " if args.rounds > 1 else ""
                        print(f"{prefix}{name:18s} c={c:<4d} {r['rps']:>10.1f} req/s  p50 "
                              f"{r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms  non-2xx "
                              f"{r['non_2xx']}  steal {r['steal_percent']}%", flush=True)
                finally:
                    server.stop()

    def rps(name: str, c: int) -> float:
        return results.get(name, {}).get(f"c{c}", {}).get("rps", float("nan"))

    def p99(name: str, c: int) -> float:
        return results.get(name, {}).get(f"c{c}", {}).get("p99_ms", float("nan"))

    best32 = max(rps("tfsfast", 32), rps("tfsfast_batching", 32))
    summary = {
        "results": results,
        "ratio_to_ceiling_c32": round(best32 / rps("ceiling", 32), 3),
        "ratio_to_gunicorn_flask_c32": round(best32 / rps("gunicorn_flask", 32), 2),
        "ratio_to_fastapi_c32": round(best32 / rps("fastapi_uvicorn", 32), 2),
        "batching_gain_c256": round(rps("tfsfast_batching", 256) / rps("tfsfast", 256), 3),
        "batching_p99_ratio_c32": round(p99("tfsfast_batching", 32) / p99("tfsfast", 32), 3),
        "metrics_on_over_off_c32": round(paired.get(
            "tfsfast_metrics", rps("tfsfast_metrics", 32) / rps("tfsfast", 32)), 3),
        "metrics_on_over_off_batching_c32": round(paired.get(
            "tfsfast_batching_metrics",
            rps("tfsfast_batching_metrics", 32) / rps("tfsfast_batching", 32)), 3),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
