"""A real tfsfast process under load while SIGTERM arrives: nothing the server has read is lost.

The clients are real: REST over raw sockets (keep-alive connections, pipelined requests, a new
connection per request) and TF Serving's gRPC stubs (one channel per client). Every request is
counted, with what became of it:

* answered: an HTTP response, a gRPC status OK (or, for a request still running at the drain's
  deadline, REST 503 / gRPC UNAVAILABLE naming the drain);
* refused, in a way a client can tell the server did not take it and may retry: connection
  refused, the connection closed before any byte of an answer (for a request written after the
  SIGTERM, or behind an answer that said ``Connection: close``), REST 503 / gRPC UNAVAILABLE;
* lost: anything else, e.g. a reset after the request was written, a connection closed in the
  middle of an answer or after an answer that kept it open, no answer to a request written
  before the SIGTERM, a gRPC CANCELLED.

A request written completely before the signal was sent is in the server's socket buffer, so it
must be answered. Whether one written after it was read is unknown to the client, which is why
"refused" is limited to what shows it was not.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfsfast.server import drain
from tfsfast.server.server import EXIT_GRACE_SECONDS
from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.tcp_sockets import peer_has_read_everything

pytestmark = pytest.mark.integration

PREDICT = b"/v1/models/m:predict"


# --- REST over raw sockets ---------------------------------------------------------------------


def predict_body(x: float) -> bytes:
    return json.dumps({"instances": [[x]]}).encode()


def expected_body(x: float) -> Any:
    return {"predictions": [[x * 0.5 + 2.0]]}


def http_post(body: bytes, *, close: bool = False, gzipped: bool = False) -> bytes:
    """A complete predict request (``Connection: close`` when ``close``)."""
    if gzipped:
        body = gzip.compress(body)
    head = [b"POST " + PREDICT + b" HTTP/1.1", b"Host: tfsfast", b"Content-Type: application/json",
            b"Content-Length: %d" % len(body)]
    if gzipped:
        head.append(b"Content-Encoding: gzip")
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class ClosedEarly(Exception):
    """The connection ended before a whole answer: ``partial`` bytes of it had come."""

    def __init__(self, partial: int) -> None:
        super().__init__(partial)
        self.partial = partial


class Reader:
    """Reads the responses of one connection in order (pipelined ones share the buffer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ClosedEarly(len(self.buffer))
        self.buffer += data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            self._more()
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
        self.buffer = rest[length:]
        return int(lines[0].split()[1]), headers, rest[:length]


# --- counting ------------------------------------------------------------------------------------


class Tally:
    """What became of every request (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.lost: list[str] = []
        self.sigterm_at = float("inf")  # monotonic time the signal was sent

    def before_sigterm(self, written_at: float) -> bool:
        return written_at < self.sigterm_at

    def answer(self, kind: str) -> None:
        with self.lock:
            self.answered[kind] += 1

    def refuse(self, why: str) -> None:
        with self.lock:
            self.refused[why] += 1

    def lose(self, what: str, written_at: float) -> None:
        with self.lock:
            self.lost.append(f"{what} (written {1000 * (written_at - self.sigterm_at):+.1f} ms "
                             f"from the SIGTERM)")

    def closed_early(self, e: ClosedEarly, written_at: float, after_keep_alive: bool) -> None:
        """A connection that ended with this request written and not answered."""
        if e.partial:
            self.lose(f"closed after {e.partial} bytes of an answer", written_at)
        elif after_keep_alive:
            self.lose("closed without answering a request behind a keep-alive answer", written_at)
        elif self.before_sigterm(written_at):
            self.lose("closed without answering a request written before the SIGTERM", written_at)
        else:
            self.refuse("closed before the answer")

    def http_answer(self, status: int, body: bytes, x: float, written_at: float) -> None:
        if status == 200 and json.loads(body) == expected_body(x):
            self.answer("REST 200")
        elif status == 503 and json.loads(body) in ({"error": drain.REFUSED},
                                                    {"error": drain.timed_out(30)}):
            self.answer("REST 503 naming the drain")
        else:
            self.lose(f"REST {status} {body[:200]!r}", written_at)

    @property
    def sent(self) -> int:
        return sum(self.answered.values()) + sum(self.refused.values()) + len(self.lost)

    def summary(self) -> str:
        return (f"sent {self.sent}: answered {sum(self.answered.values())} "
                f"{dict(self.answered)}, refused {sum(self.refused.values())} "
                f"{dict(self.refused)}, lost {len(self.lost)}")


# --- the clients ---------------------------------------------------------------------------------


def keep_alive_client(port: int, tally: Tally, stop: threading.Event, seed: int) -> None:
    """One request at a time on a connection kept open, as HTTP client libraries do; a new
    connection after an answer with ``Connection: close`` or a clean close."""
    sock: socket.socket | None = None
    reader: Reader | None = None
    n = 0
    while not stop.is_set():
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            except (ConnectionRefusedError, ConnectionResetError):  # see new_connection_client
                tally.refuse("connection refused")
                return
            reader = Reader(sock)
        assert reader is not None
        n += 1
        x = float(seed * 100_000 + n)
        try:
            sock.sendall(http_post(predict_body(x)))
        except OSError:
            tally.refuse("connection ended before the request was written")
            sock.close()
            sock = None
            continue
        written_at = time.monotonic()
        try:
            status, headers, body = reader.response()
        except ClosedEarly as e:
            tally.closed_early(e, written_at, after_keep_alive=False)
            sock.close()
            sock = None
            continue
        except OSError as e:
            tally.lose(f"{type(e).__name__} after the request was written", written_at)
            sock.close()
            sock = None
            continue
        tally.http_answer(status, body, x, written_at)
        if headers.get("connection") == "close":
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def pipelining_client(port: int, tally: Tally, stop: threading.Event, seed: int) -> None:
    """Three requests written at once on a keep-alive connection, then their three answers."""
    sock: socket.socket | None = None
    reader: Reader | None = None
    n = 0
    while not stop.is_set():
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            except (ConnectionRefusedError, ConnectionResetError):  # see new_connection_client
                tally.refuse("connection refused")
                return
            reader = Reader(sock)
        assert reader is not None
        xs = [float(seed * 100_000 + n + i) for i in range(3)]
        n += 3
        try:
            sock.sendall(b"".join(http_post(predict_body(x)) for x in xs))
        except OSError:
            for _ in xs:
                tally.refuse("connection ended before the request was written")
            sock.close()
            sock = None
            continue
        written_at = time.monotonic()
        closed = False
        for i, x in enumerate(xs):
            if closed:
                tally.refuse("not taken, behind an answer with Connection: close")
                continue
            try:
                status, headers, body = reader.response()
            except ClosedEarly as e:
                tally.closed_early(e, written_at, after_keep_alive=i > 0)
                closed = True
                continue
            except OSError as e:
                tally.lose(f"{type(e).__name__} after the request was written", written_at)
                closed = True
                continue
            tally.http_answer(status, body, x, written_at)
            closed = headers.get("connection") == "close"
        if closed:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def new_connection_client(port: int, tally: Tally, stop: threading.Event, seed: int) -> None:
    """A new connection for every request (``Connection: close``), as probes and scripts do."""
    n = 0
    while not stop.is_set():
        n += 1
        x = float(seed * 100_000 + n)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        except (ConnectionRefusedError, ConnectionResetError):
            # Refused, or reset in the handshake: a connection the closing listener had queued
            # but never accepted. Nothing was sent on it either way.
            tally.refuse("connection refused")
            return
        with sock:
            try:
                sock.sendall(http_post(predict_body(x), close=True))
            except OSError:
                tally.refuse("connection ended before the request was written")
                continue
            written_at = time.monotonic()
            try:
                status, _, body = Reader(sock).response()
            except ClosedEarly as e:
                tally.closed_early(e, written_at, after_keep_alive=False)
                continue
            except OSError as e:
                tally.lose(f"{type(e).__name__} after the request was written", written_at)
                continue
            tally.http_answer(status, body, x, written_at)


def predict_request(x: float) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    tensor = request.inputs["x"]
    tensor.dtype = 1  # DT_FLOAT
    tensor.float_val.append(x)
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 1
    return request


def grpc_client(port: int, tally: Tally, stop: threading.Event, seed: int) -> None:
    """Predict after Predict on one channel (one HTTP/2 connection, kept open)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        n = 0
        while not stop.is_set():
            n += 1
            x = float(seed * 100_000 + n)
            started_at = time.monotonic()
            try:
                response = stub.Predict(predict_request(x), timeout=60)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    tally.refuse(f"gRPC UNAVAILABLE"
                                 f"{' (drain)' if e.details() == drain.REFUSED else ''}")
                    if e.details() != drain.REFUSED:
                        return  # the connection is gone: the server has stopped
                else:
                    tally.lose(f"gRPC {e.code().name}: {e.details()}", started_at)
                continue
            if list(response.outputs["y"].float_val) == [x * 0.5 + 2.0]:
                tally.answer("gRPC OK")
            else:
                tally.lose(f"gRPC answer {response.outputs['y']}", started_at)


# --- the servers ---------------------------------------------------------------------------------


def model_flags(tmp_path: Path, exported_models: dict[str, Path]) -> list[str]:
    base = tmp_path / "m"
    if not base.exists():
        shutil.copytree(exported_models["tf1"], base / "1")
    return ["--model_name=m", f"--model_base_path={base}"]


def batching_flags(tmp_path: Path, timeout_micros: int, max_batch_size: int = 64) -> list[str]:
    params = tmp_path / f"batching_{timeout_micros}.txt"
    params.write_text(f"max_batch_size {{ value: {max_batch_size} }}\n"
                      f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
                      "max_enqueued_batches { value: 1000 }\n"
                      "num_batch_threads { value: 2 }\n")
    return ["--enable_batching", f"--batching_parameters_file={params}"]


def sigterm_under_load(server: ServerProcess, clients: list[Callable[..., None]]) -> Tally:
    """Runs ``clients`` against ``server`` until they have had some answers, sends SIGTERM, and
    returns the tally once the process has exited 0."""
    tally = Tally()
    stop = threading.Event()
    threads = []
    for seed, client in enumerate(clients, start=1):
        port = server.grpc_port if client is grpc_client else server.rest_port
        threads.append(threading.Thread(target=client, args=(port, tally, stop, seed)))
    for thread in threads:
        thread.start()
    try:
        server.wait_until(lambda: sum(tally.answered.values()) >= 30 * len(clients),
                          "the clients")
        assert server.process is not None
        tally.sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()  # whatever happened, the process does not outlive the test
    assert code == 0, server.log
    assert "Server stopped" in server.log
    return tally


# --- the tests -----------------------------------------------------------------------------------

STEADY_LOAD = [keep_alive_client] * 4 + [grpc_client] * 2 + [pipelining_client,
                                                               new_connection_client]


@pytest.mark.parametrize("variant", ["plain", "batching", "python"])
def test_sigterm_under_steady_load_loses_nothing_the_server_read(
        variant: str, tmp_path: Path, exported_models: dict[str, Path]) -> None:
    """4 REST and 2 gRPC keep-alive clients, a pipelining one and one that connects per request:
    a SIGTERM in the middle of their traffic loses none of their requests. Three rounds: the
    compiled modules, the same with batching (answers come from a batch), and the pure-Python
    twins."""
    flags = model_flags(tmp_path, exported_models)
    env = {"TFSFAST_NO_EXTENSIONS": "1"} if variant == "python" else None
    if variant == "batching":
        flags += batching_flags(tmp_path, timeout_micros=1000)
    tally = sigterm_under_load(ServerProcess(flags, env=env).start(), STEADY_LOAD)
    print(f"\n{variant}: {tally.summary()}")
    assert tally.lost == [], tally.summary()
    assert tally.answered["REST 200"] > 0 and tally.answered["gRPC OK"] > 0, tally.summary()


def test_pipelined_requests_behind_a_batched_one_are_all_answered(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    """Three requests pipelined on one connection, the first waiting in a batch when SIGTERM
    comes: the drain answers all three, in order, the last with ``Connection: close``."""
    flags = model_flags(tmp_path, exported_models) + batching_flags(tmp_path, 500_000)
    with ServerProcess(flags) as server:
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=60)
        with sock:
            # A fast-path predict, a status request and a gzipped predict (the handler's).
            sock.sendall(http_post(predict_body(1.0))
                         + b"GET /v1/models/m HTTP/1.1\r\nHost: tfsfast\r\n\r\n"
                         + http_post(predict_body(3.0), gzipped=True))
            # Once the server has read the three, the first waits for its batch (500 ms).
            server.wait_until(lambda: peer_has_read_everything(sock), "the requests to be read")
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            reader = Reader(sock)
            first, second, third = reader.response(), reader.response(), reader.response()
            with pytest.raises(ClosedEarly) as end:
                reader.response()
        assert server.process.wait(60) == 0
    assert (first[0], json.loads(first[2])) == (200, expected_body(1.0))
    assert (second[0], json.loads(second[2])["model_version_status"][0]["state"]) == (
        200, "AVAILABLE")
    assert (third[0], json.loads(third[2])) == (200, expected_body(3.0))
    assert [r[1].get("connection") for r in (first, second, third)] == [None, None, "close"]
    assert end.value.partial == 0


@pytest.mark.parametrize("drain_timeout", [0, 1])
def test_a_drain_timeout_shorter_than_the_batch_answers_503_and_unavailable(
        drain_timeout: int, tmp_path: Path, exported_models: dict[str, Path]) -> None:
    """Requests wait in a 10 s batch when SIGTERM comes with a shorter drain timeout: at the
    deadline every one of them is answered, REST 503 and gRPC UNAVAILABLE naming the drain (a
    request pipelined behind one as well, the last answer closing the connection), and the
    process exits 0 within the drain timeout and the exit grace. The REST requests take both
    paths: the fast path's batched answer and the handler's (gzip)."""
    flags = (model_flags(tmp_path, exported_models) + batching_flags(tmp_path, 10_000_000)
             + [f"--drain_timeout_seconds={drain_timeout}"])
    message = drain.timed_out(drain_timeout)
    with ServerProcess(flags) as server:
        rest: list[tuple[int, dict[str, str], bytes]] = []
        calls: list[tuple[grpc.StatusCode, str]] = []
        socks = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=60)
                 for _ in range(3)]
        socks[0].sendall(http_post(predict_body(1.0)))
        socks[1].sendall(http_post(predict_body(2.0), gzipped=True))
        socks[2].sendall(http_post(predict_body(3.0)) + http_post(predict_body(4.0)))

        channels = [grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") for _ in range(3)]
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=60)

        def call(channel: grpc.Channel) -> None:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                stub.Predict(predict_request(5.0), timeout=60)
            except grpc.RpcError as e:
                calls.append((e.code(), e.details()))

        threads = [threading.Thread(target=call, args=(channel,)) for channel in channels]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every request has reached its batch (the connections are up)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # TimeoutExpired past the bound.
        code = server.process.wait(drain_timeout + EXIT_GRACE_SECONDS + 5)
        for thread in threads:
            thread.join(60)
        for channel in channels:
            channel.close()
        for sock in socks:
            with sock:
                reader = Reader(sock)
                rest.append(reader.response())
                if sock is socks[2]:
                    rest.append(reader.response())
                with pytest.raises(ClosedEarly):
                    reader.response()
    assert code == 0
    assert [(status, json.loads(body)) for status, _, body in rest] == [
        (503, {"error": message})] * 4
    assert [headers.get("connection") for _, headers, _ in rest] == [
        "close", "close", None, "close"]
    assert calls == [(grpc.StatusCode.UNAVAILABLE, message)] * 3
    assert (f"Drain timeout ({drain_timeout} s, --drain_timeout_seconds): answering the 3 REST "
            f"connection(s) and 3 gRPC call(s) still in progress 503/UNAVAILABLE") in server.log
    assert "Server stopped" in server.log


def export_endless_model(path: Path) -> None:
    """A SavedModel whose run counts to its input ``n``: with a large ``n`` it does not end."""
    import tensorflow as tf

    class Count(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.int64, name="n")])
        def __call__(self, n: Any) -> Any:
            count = tf.while_loop(lambda i: i < n[0], lambda i: i + 1,
                                  [tf.constant(0, tf.int64)])[0]
            return {"count": tf.reshape(count, [1])}

    module = Count()
    tf.saved_model.save(module, str(path), signatures=module.__call__)


def test_a_run_that_never_ends_does_not_keep_the_process(tmp_path: Path) -> None:
    """A model run still going at the drain's deadline is answered 503, and the process exits
    0 within the exit grace although the run goes on (its thread would hold the interpreter's
    exit)."""
    export_endless_model(tmp_path / "count" / "1")
    flags = ["--model_name=count", f"--model_base_path={tmp_path / 'count'}",
             "--drain_timeout_seconds=1"]
    with ServerProcess(flags) as server:
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=60)
        with sock:
            body = json.dumps({"instances": [10**15]}).encode()
            sock.sendall(b"POST /v1/models/count:predict HTTP/1.1\r\nHost: tfsfast\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            # Read: the run starts before the loop gets to the signal.
            server.wait_until(lambda: peer_has_read_everything(sock), "the request to be read")
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            # TimeoutExpired past the bound.
            code = server.process.wait(1 + EXIT_GRACE_SECONDS + 5)
            status, headers, answer = Reader(sock).response()
    assert code == 0
    assert (status, json.loads(answer), headers["connection"]) == (
        503, {"error": drain.timed_out(1)}, "close")
    assert ("Exiting 5 s after the drain timeout (1 s) with work still running: a model run or "
            "unload did not end") in server.log

