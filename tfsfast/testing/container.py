"""Runs a tfsfast container image with docker or podman, for the image tests.

The tests drive the engine's command line exactly as a user would (``run -p ... --mount ... -e
...``), so what they check is what a TF Serving user gets when swapping the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence

from tfsfast.testing.server_process import READY_LINE, free_port


def container_engine() -> str | None:
    """``$TFSFAST_CONTAINER_ENGINE`` (the Makefile's ``ENGINE``) if set, else ``podman`` or
    ``docker``, whichever is installed (podman first: it needs no daemon)."""
    chosen = os.environ.get("TFSFAST_CONTAINER_ENGINE")
    if chosen:
        return shutil.which(chosen)
    for name in ("podman", "docker"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def host_port(preferred: int) -> int:
    """``preferred`` if nothing listens there (the documented recipe's port), else a free one."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", preferred))
        except OSError:
            return free_port()
    return preferred


class Container:
    """One detached container of ``image``; ``start`` returns once its REST API is exported.

    ``run_args`` go between ``run`` and the image (ports, mounts, environment), ``args`` after
    it (appended to the image's entrypoint, as ``docker run IMAGE --flag`` does).
    """

    def __init__(self, engine: str, image: str, run_args: Sequence[str] = (),
                 args: Sequence[str] = ()) -> None:
        self.engine = engine
        self.image = image
        self.name = f"tfsfast-test-{uuid.uuid4().hex[:12]}"
        self.run_args = list(run_args)
        self.args = list(args)

    def engine_command(self, *args: str, timeout: float = 120,
                       check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start(self, ready_line: str = READY_LINE, timeout: float = 180) -> Container:
        self.engine_command("run", "-d", "--name", self.name, *self.run_args, self.image,
                            *self.args)
        self.wait_for_log(ready_line, timeout)
        return self

    def logs(self) -> str:
        result = self.engine_command("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.logs():
                return
            if not self.running():
                raise RuntimeError(f"container exited before logging {text!r}:\n{self.logs()}")
            time.sleep(0.5)
        raise RuntimeError(f"no {text!r} within {timeout} s:\n{self.logs()}")

    def inspect(self, template: str) -> str:
        return self.engine_command("inspect", "--format", template, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def exit_code(self) -> int:
        return int(self.inspect("{{.State.ExitCode}}"))

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.engine_command("exec", self.name, *command, check=False)

    def stop(self, timeout: int) -> float:
        """``docker stop -t timeout``: SIGTERM, then SIGKILL after ``timeout`` s. Returns the
        seconds the stop took."""
        began = time.monotonic()
        self.engine_command("stop", "-t", str(timeout), self.name, timeout=timeout + 60)
        return time.monotonic() - began

    def remove(self) -> None:
        self.engine_command("rm", "-f", self.name, check=False)

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()
