"""The REST clients' HTTP/1.1 against a scripted server: every framing of an answer TF Serving's
server or a proxy in front of it may send, and a kept connection the server closed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tfsfast.client import Code, ModelVersionStatus, RequestError

from .clients import connect

STATUS = json.dumps({"model_version_status": [{
    "version": "3", "state": "AVAILABLE",
    "status": {"error_code": "OK", "error_message": ""}}]}).encode()
EXPECTED = [ModelVersionStatus(3, "AVAILABLE", Code.OK, "")]


def head(*fields: str, status: str = "200 OK") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *fields]) + "\r\n\r\n").encode()


class ScriptedServer:
    """Answers the n-th request it reads with ``answers[n]`` (bytes, then closes the
    connection when the answer is followed by None), ``delays[n]`` seconds after reading it;
    counts connections and requests."""

    def __init__(self, answers: Sequence[bytes | None],
                 delays: Sequence[float] = ()) -> None:
        self.answers = list(answers)
        self.delays = list(delays)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buffer = b""
                while self.answers:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buffer += data
                    else:
                        request, _, buffer = buffer.partition(b"\r\n\r\n")
                        self.requests.append(request)
                        if self.delays:
                            time.sleep(self.delays.pop(0))
                        conn.sendall(self.answers.pop(0) or b"")
                        if self.answers and self.answers[0] is None:
                            self.answers.pop(0)
                            break  # close this connection
                        continue
                    break

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(params=["rest-json", "async-rest-json"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(answers: Sequence[bytes | None], delays: Sequence[float] = ()) -> ScriptedServer:
        servers.append(ScriptedServer(answers, delays))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def status_of(kind: str, server: ScriptedServer, calls: int = 1) -> list[Any]:
    target = f"127.0.0.1:{server.port}"
    client = connect(kind, target, target, timeout=10)
    try:
        return [client.model_status("m") for _ in range(calls)]
    finally:
        client.close()


def test_content_length_and_a_kept_connection(kind: str, scripted: Any) -> None:
    answer = head("Content-Type: application/json", f"Content-Length: {len(STATUS)}") + STATUS
    server = scripted([answer, answer, answer])
    assert status_of(kind, server, 3) == [EXPECTED] * 3
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /v1/models/m HTTP/1.1\r\nHost: 127.0.0.1:")


def test_each_call_on_a_kept_connection_waits_until_its_own_deadline(kind: str,
                                                                     scripted: Any) -> None:
    """A call with a short timeout leaves no shorter wait behind on the connection: the next
    call waits for an answer that comes later than the first call's timeout; and a call the
    server answers too late ends at its own deadline."""
    answer = head("Content-Type: application/json", f"Content-Length: {len(STATUS)}") + STATUS
    server = scripted([answer] * 3, delays=[0, 0.6, 2])
    target = f"127.0.0.1:{server.port}"
    client = connect(kind, target, target, timeout=10)
    try:
        assert client.model_status("m", timeout=0.3) == EXPECTED
        assert client.model_status("m", timeout=5) == EXPECTED
        start = time.monotonic()
        with pytest.raises(RequestError) as e:
            client.model_status("m", timeout=0.8)
        elapsed = time.monotonic() - start
    finally:
        client.close()
    assert e.value.code == Code.DEADLINE_EXCEEDED
    assert 0.8 <= elapsed < 1.5
    assert server.connections == 1


def test_chunks_with_extensions_and_trailers(kind: str, scripted: Any) -> None:
    body = (b"%x;name=value\r\n%s\r\n%x\r\n%s\r\n0\r\nTrailer-Field: x\r\n\r\n"
            % (10, STATUS[:10], len(STATUS) - 10, STATUS[10:]))
    server = scripted([head("content-type: application/json",
                            "TRANSFER-ENCODING: chunked") + body] * 2)
    assert status_of(kind, server, 2) == [EXPECTED] * 2
    assert server.connections == 1


def test_a_body_until_the_server_closes(kind: str, scripted: Any) -> None:
    """No Content-Length and no chunks: the body ends with the connection, which is not kept."""
    answer = head("Content-Type: application/json") + STATUS
    server = scripted([answer, None, answer, None])
    assert status_of(kind, server, 2) == [EXPECTED] * 2
    assert server.connections == 2


def test_an_interim_answer_before_the_answer(kind: str, scripted: Any) -> None:
    answer = (head(status="100 Continue") + head("Content-Type: application/json",
                                                 f"Content-Length: {len(STATUS)}") + STATUS)
    assert status_of(kind, scripted([answer])) == [EXPECTED]


def test_a_kept_connection_the_server_closed_is_replaced(kind: str, scripted: Any) -> None:
    """The server closes the connection after its answer without saying so: the next call
    finds it closed (or sends into it and reads nothing) and goes out on a new one."""
    answer = head("Content-Type: application/json", f"Content-Length: {len(STATUS)}") + STATUS
    server = scripted([answer, None, answer])
    assert status_of(kind, server, 2) == [EXPECTED] * 2
    assert server.connections == 2 and len(server.requests) == 2


def test_an_error_page_that_is_not_the_apis(kind: str, scripted: Any) -> None:
    """A proxy's answer: its text is the message, its status the code."""
    page = b"upstream unavailable\n"
    server = scripted([head("Content-Type: text/plain", f"Content-Length: {len(page)}",
                            status="503 Service Unavailable") + page])
    with pytest.raises(RequestError) as e:
        status_of(kind, server)
    assert (e.value.code, e.value.message, e.value.http_status) == (
        Code.UNAVAILABLE, "upstream unavailable", 503)


@pytest.mark.parametrize("answer, message", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x status line: b'SSH-2.0-OpenSSH_9.2'"),
    (head("Content-Length: 1x"), "malformed Content-Length: b'1x'"),
    (head("Transfer-Encoding: chunked") + b"zz\r\n", "malformed chunk size: b'zz\\r\\n'"),
])
def test_an_answer_that_is_not_http_is_an_internal_error(kind: str, scripted: Any,
                                                         answer: bytes, message: str) -> None:
    server = scripted([answer])
    with pytest.raises(RequestError) as e:
        status_of(kind, server)
    assert (e.value.code, e.value.message, e.value.http_status) == (
        Code.INTERNAL, f"malformed HTTP answer from 127.0.0.1:{server.port}: {message}", None)


def test_a_malformed_body_is_an_internal_error(kind: str, scripted: Any) -> None:
    body = b'{"model_version_status": 7}'
    server = scripted([head("Content-Type: application/json",
                            f"Content-Length: {len(body)}") + body])
    with pytest.raises(RequestError) as e:
        status_of(kind, server)
    assert (e.value.code, e.value.http_status) == (Code.INTERNAL, 200)
    assert e.value.message == ("malformed answer from the server: "
                               "TypeError(\"'int' object is not iterable\")")
