"""Local servers of the object-store APIs, for tests: an S3-compatible server (moto's, with
authentication enforced), a GCS emulator (gcp-storage-emulator, keeping its objects on disk so it
can be stopped and started again), and a TCP proxy that injects faults between a client and
either of them (a connection cut in the middle of a response, a throttling answer).

Everything listens on 127.0.0.1 and is a subprocess or a thread of the test process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tfsfast.testing.server_process import free_port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator on port {port} did not start") from None
            time.sleep(0.05)


class S3Emulator:
    """moto's server in a subprocess, authenticating every request after the first three (which
    create the IAM user whose key the tests use: ``access_key_id``, ``secret_access_key``)."""

    REGION = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.access_key_id = ""
        self.secret_access_key = ""

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> S3Emulator:
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process)
        iam = self._client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="tfsfast")
        key = iam.create_access_key(UserName="tfsfast")["AccessKey"]
        iam.put_user_policy(UserName="tfsfast", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)

    def _client(self, service: str, key_id: str, secret: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=f"http://{self.endpoint}",
                            region_name=self.REGION, aws_access_key_id=key_id,
                            aws_secret_access_key=secret)

    def client(self) -> Any:
        return self._client("s3", self.access_key_id, self.secret_access_key)

    def server_environment(self, endpoint: str | None = None) -> dict[str, str]:
        """What a server is given to reach this store, as TensorFlow's users set it."""
        return {"S3_ENDPOINT": endpoint or self.endpoint, "S3_USE_HTTPS": "0",
                "AWS_REGION": self.REGION, "AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key}

    def upload(self, bucket: str, key: str, path: Path) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        client = self.client()
        for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=item["Key"])


class GcsEmulator:
    """gcp-storage-emulator in a subprocess; its objects live in ``data_dir``, so ``stop`` then
    ``start`` brings the same objects back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="gcs-emulator-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GcsEmulator:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", self.data_dir, "start",
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.endpoint
        try:
            return storage.Client(project="tfsfast", credentials=AnonymousCredentials())
        finally:
            if previous is None:
                del os.environ["STORAGE_EMULATOR_HOST"]
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous

    def upload(self, bucket: str, key: str, path: Path) -> None:
        self.client().bucket(bucket).blob(key).upload_from_filename(str(path))


class FaultyProxy:
    """A TCP proxy to ``127.0.0.1:target_port`` that can break answers to chosen requests.

    ``cut_responses(text)``: a request whose request line contains ``text`` gets the answer's
    headers and one byte of its body, then the connection closes (a network failure in the
    middle of a download). ``answer(text, raw)``: such a request gets ``raw`` (a whole HTTP
    response) instead of reaching the target. ``heal()`` ends both. One connection per request
    is assumed for the faults (the emulators close each connection after answering).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._cut: str | None = None
        self._answer: tuple[str, bytes] | None = None
        self.faults = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_responses(self, text: str) -> None:
        with self._lock:
            self._cut = text

    def answer(self, text: str, raw: bytes) -> None:
        with self._lock:
            self._answer = (text, raw)

    def heal(self) -> None:
        with self._lock:
            self._cut = None
            self._answer = None

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _fault(self, request: bytes) -> tuple[bool, bytes | None]:
        """(cut the answer, a canned answer) for a request whose first bytes are ``request``."""
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        with self._lock:
            cut = self._cut is not None and self._cut in line
            answer = self._answer[1] if self._answer and self._answer[0] in line else None
            if cut or answer is not None:
                self.faults += 1
        return cut, answer

    def _serve(self, client: socket.socket) -> None:
        # Requests on one connection come one after the other (no pipelining), so each chunk
        # from the client that starts a request is checked, keep-alive connections included.
        cutting = threading.Event()
        with client:
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            except OSError:
                return  # the target is down: the client sees the connection close
            with upstream:
                threading.Thread(target=self._relay, args=(upstream, client, cutting),
                                 daemon=True).start()
                while True:
                    try:
                        data = client.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    cut, answer = self._fault(data)
                    if answer is not None:
                        try:
                            client.sendall(answer)
                        except OSError:
                            pass
                        return
                    if cut:
                        cutting.set()
                    try:
                        upstream.sendall(data)
                    except OSError:
                        return

    @staticmethod
    def _relay(upstream: socket.socket, client: socket.socket, cutting: threading.Event) -> None:
        received = b""
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if cutting.is_set():
                received += data
                end = received.find(b"\r\n\r\n")
                if end < 0:
                    continue
                try:
                    client.sendall(received[:end + 5])  # the headers and one byte of the body
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            try:
                client.sendall(data)
            except OSError:
                return
