"""What the end-to-end benchmarks share: free ports, core pinning, the half_plus_two model, the
machine's steal time."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(core: int) -> list[str]:
    """A ``taskset`` prefix that runs a command on one core (none on a one-core machine)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


class StealMeter:
    """The share of the machine's CPU time the hypervisor gave to other guests (``steal`` in
    ``/proc/stat``) between ``start()`` and ``percent()``; None where there is no such figure.

    On a shared virtual machine a neighbour can take 40-60% of both cores for tens of seconds:
    every server measured then looks several times slower than it is, and the benchmark prints
    this figure next to each measurement so such windows are seen for what they are.
    """

    def __init__(self) -> None:
        self._start: tuple[int, int] | None = None

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 8:
            return None
        return fields[7], sum(fields[:8])  # steal, and every state up to it

    def start(self) -> None:
        self._start = self._read()

    def percent(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return None
        return round(100.0 * (end[0] - self._start[0]) / (end[1] - self._start[1]), 1)


def model_base_path(workdir: Path) -> Path:
    """TF Serving's ``saved_model_half_plus_two_cpu`` from ``../shared``, else the same model
    exported with TensorFlow into ``workdir``."""
    shared = REPO.parent / "shared" / "testdata" / "tfserving" / "saved_model_half_plus_two_cpu"
    if shared.exists():
        return shared
    from tfsfast.testing.export_models import export_half_plus_two_tf1

    base = workdir / "half_plus_two"
    export_half_plus_two_tf1(str(base / "123"))
    return base


# What ``--monitoring_config_file`` gets in the metrics-on rows: TF Serving's
# testdata/monitoring_config.txt.
MONITORING_CONFIG = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


Burst = dict[str, Any]  # one burst's figures, requests/s as "rps"


def paired_bursts(numerator: Callable[[], Burst], denominator: Callable[[], Burst],
                  bursts: int) -> tuple[float, list[Burst], list[Burst]]:
    """The median of ``bursts`` paired ratios of requests/s (``rps``), ``numerator``'s over
    ``denominator``'s, each a call that measures one burst; with the bursts of each side.

    The two sides alternate, and which goes first alternates too (the denominator on even
    bursts): a neighbour's burst on a shared machine then hits both sides of a pair, and the
    median drops the pairs it hit unevenly. Steadier than comparing best rounds for ratios near
    1, where a few percent matters.
    """
    ratios: list[float] = []
    above: list[Burst] = []
    below: list[Burst] = []
    for burst in range(bursts):
        if burst % 2 == 0:
            den = denominator()
            num = numerator()
        else:
            num = numerator()
            den = denominator()
        above.append(num)
        below.append(den)
        ratios.append(num["rps"] / den["rps"])
    return statistics.median(ratios), above, below
