"""A real Prometheus server (Debian's ``prometheus``) for tests: it scrapes given targets and
answers queries through its HTTP API, as a production Prometheus scraping tfsfast would.

``PrometheusServer(targets, metrics_path)`` writes a scrape config (every target scraped each
``SCRAPE_INTERVAL``, at ``metrics_path``), starts ``prometheus`` on a free port with its storage
in a temporary directory, and waits for ``/-/ready``. ``query(promql)`` returns the instant
vector's samples as ``{frozenset(labels.items()): value}``; ``scrapes_after(t)`` tells whether
every target has been scraped (successfully) since ``t``, so a test can wait for the scrape that
follows the requests it sent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tfsfast.testing.server_process import free_port
from tfsfast.testing.wait import wait_until

# Short, so a test waits a second or two for the scrape after its requests.
SCRAPE_INTERVAL = "1s"

Samples = dict[frozenset[tuple[str, str]], float]


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    def __init__(self, targets: Sequence[str], metrics_path: str) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not installed (Debian: apt-get install "
                               "prometheus; `make test` installs it when it can)")
        self._binary = binary
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="tfsfast_prometheus_"))
        config = self._dir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [{"job_name": "tfsfast", "metrics_path": metrics_path,
                                "static_configs": [{"targets": list(targets)}]}],
        }))
        self._config = config
        self._log = self._dir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                [self._binary, f"--config.file={self._config}",
                 f"--storage.tsdb.path={self._dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, "prometheus to be ready", detail=self.log)
        return self

    def log(self) -> str:
        return self._log.read_text(errors="replace")

    def _get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError("prometheus exited:\n" + self.log())
        try:
            self._get("/-/ready")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def query(self, promql: str) -> Samples:
        answer = json.loads(self._get("/api/v1/query", query=promql))
        if answer["status"] != "success":
            raise AssertionError(f"query {promql!r} failed: {answer}")
        return {frozenset(sample["metric"].items()): float(sample["value"][1])
                for sample in answer["data"]["result"]}

    def scrapes_after(self, since: float) -> bool:
        """Whether every target's last scrape began after ``since`` (a ``time.time()``) and
        succeeded."""
        targets = json.loads(self._get("/api/v1/targets"))["data"]["activeTargets"]
        return bool(targets) and all(
            target["health"] == "up" and _rfc3339(target["lastScrape"]) > since
            for target in targets)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rfc3339(text: str) -> float:
    """Prometheus's ``2026-12-07T01:02:03.123456789Z`` as a Unix time (Python 3.11 reads the
    nanoseconds to microseconds)."""
    return datetime.fromisoformat(text).timestamp()


__all__ = ["SCRAPE_INTERVAL", "PrometheusServer", "prometheus_binary"]
