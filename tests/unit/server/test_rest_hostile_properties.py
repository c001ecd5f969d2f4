"""Arbitrary request bodies against the REST stack a server runs, in process: never a 5xx.

Every route (predict, classify, regress) gets arbitrary JSON and msgpack documents, arbitrary
bytes and gzip streams of all three, as bytes on a connection (the ``HttpProtocol``, the REST
fast path and ``HttpRestApiHandler`` this configuration selects, over a real ServerCore). Each
answer must be a 2xx or a 4xx, in the format the request asked for, an error carrying a
non-empty message; and the same connection (or, after an answer that closes it, a new one) must
then answer a good predict. Run with ``TFSFAST_NO_EXTENSIONS=1`` for the pure-Python twins.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpServerLimits
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.http.http_server import HttpProtocol
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.fake_transport import FakeTransport

LIMIT = 1 << 20
GOOD = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\n"
        b'{"instances": [[2.0]]}')
# Bounded: a few hundred requests in all, a few milliseconds each.
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    base = tmp_path_factory.mktemp("hostile") / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("m", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0))
    yield core
    core.stop()


class Server:
    """Connections to the REST stack on one event loop (``exchange`` runs it)."""

    def __init__(self, core: ServerCore) -> None:
        self.options = RestApiOptions(max_decompressed_body_bytes=LIMIT)
        self.handler = HttpRestApiHandler(core, self.options)
        self.fast_path = rest_fast_path.for_core(core, self.options)
        self.loop = asyncio.new_event_loop()
        self.connection: tuple[Any, FakeTransport] | None = None

    def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Sends ``request`` on the open connection (a new one if the last was closed) and
        returns the answer: (status, headers, body)."""
        if self.connection is None or self.connection[1].closed:
            protocol = HttpProtocol(self.handler, HttpServerLimits(max_body_bytes=LIMIT),
                                    self.handler.error_response, None, self.fast_path)
            transport = FakeTransport()
            self.loop.call_soon(protocol.connection_made, transport)
            self.loop.run_until_complete(asyncio.sleep(0))
            self.connection = (protocol, transport)
        protocol, transport = self.connection
        del transport.data[:]
        self.loop.call_soon(protocol.data_received, request)  # on the loop, as a server calls it
        self.loop.run_until_complete(transport.wait_for(1))
        response = _complete(transport.data)
        assert response is not None
        return response

    def close(self) -> None:
        self.loop.close()


def _complete(data: bytearray) -> tuple[int, dict[bytes, bytes], bytes] | None:
    """The one response in ``data`` once all of it is there."""
    if b"\r\n\r\n" not in data:
        return None
    head, body = bytes(data).split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = {k.lower(): v for k, v in (line.split(b": ", 1) for line in lines[1:])}
    if len(body) < int(headers[b"content-length"]):
        return None
    assert len(body) == int(headers[b"content-length"]), "more than one response"
    return int(lines[0].split(b" ")[1]), headers, body


@pytest.fixture(scope="module")
def server(core: ServerCore) -> Iterator[Server]:
    s = Server(core)
    yield s
    s.close()


def check(server: Server, route: str, body: bytes, headers: dict[str, str]) -> None:
    """Sends one hostile request and asserts the contract (module docstring)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {route} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    status, got, payload = server.exchange(request)
    assert status < 500, (status, payload[:300])
    lower = {k.lower(): v for k, v in headers.items()}
    msgpack_out = ("msgpack" in lower.get("accept", "") or (
        "json" not in lower.get("accept", "") and "msgpack" in lower.get("content-type", "")))
    want = b"application/msgpack" if msgpack_out else b"application/json"
    assert got[b"content-type"] == want, (status, payload[:300])
    if status != 200:
        error = (msgpack.unpackb(payload) if msgpack_out else json.loads(payload))["error"]
        assert isinstance(error, str) and error, payload[:300]
    good = server.exchange(GOOD)
    assert (good[0], json.loads(good[2])) == (200, {"predictions": [[3.0]]})


# --- strategies ------------------------------------------------------------------------------

ROUTES = st.sampled_from(["/v1/models/m:predict", "/v1/models/m:classify",
                          "/v1/models/m:regress", "/v1/models/m/versions/1:predict",
                          "/v1/models/m/versions/1:regress"])
TOP_KEYS = ["instances", "inputs", "examples", "context", "signature_name"]
SIGNATURES = st.sampled_from(["", "serving_default", "classify_x_to_y", "regress_x_to_y",
                              "nope"])
NAMES = st.sampled_from(["x", "y", "inputs", "b64", "dtype", "shape", "data"]) | st.text(
    max_size=4)

json_scalars = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))
json_values = st.recursive(
    json_scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=3)
                   | st.builds(lambda s: {"b64": s}, st.text(max_size=8))),
    max_leaves=16)
json_documents = st.dictionaries(st.sampled_from(TOP_KEYS) | st.text(max_size=4), json_values,
                                 max_size=4) | json_values


def _json_body(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8", "surrogatepass")


# msgpack holds more than JSON: bins, ext values, keys of any type, a tensor map's parts.
mp_scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
              | st.binary(max_size=8)
              | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
              | st.builds(msgpack.Timestamp, st.integers(0, 1 << 33), st.integers(0, 10**9 - 1)))
mp_keys = (NAMES | st.integers(-5, 5) | st.floats() | st.none() | st.booleans()
           | st.binary(max_size=3) | st.tuples(st.integers(0, 3)))
tensor_maps = st.fixed_dictionaries({
    "dtype": st.sampled_from(["float32", "float64", "int64", "string", "bool", "complex64", "x"])
    | st.integers(-1, 1 << 40),
    "shape": st.lists(st.integers(-2, 4), max_size=3) | st.integers(-1, 1 << 40),
    "data": st.binary(max_size=32) | st.lists(st.binary(max_size=3), max_size=4)})
mp_values = st.recursive(
    mp_scalars | tensor_maps,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(mp_keys, inner, max_size=3)
                   | st.dictionaries(NAMES, inner, max_size=3)),
    max_leaves=16)
mp_documents = st.dictionaries(st.sampled_from(TOP_KEYS) | mp_keys, mp_values,
                               max_size=4) | mp_values


def _msgpack_body(doc: Any) -> bytes:
    return msgpack.packb(doc, use_bin_type=True, unicode_errors="surrogatepass")


FORMATS = st.sampled_from([
    {}, {"Content-Type": "application/json"}, {"Accept": "application/msgpack"},
    {"Content-Type": "application/msgpack"},
    {"Content-Type": "application/msgpack", "Accept": "application/json"}])


def _with_signature(doc: Any, signature: str | None) -> Any:
    if signature is not None and isinstance(doc, dict):
        return {**doc, "signature_name": signature}
    return doc


# --- properties ------------------------------------------------------------------------------


@PROPERTY
@given(route=ROUTES, doc=json_documents, signature=st.none() | SIGNATURES, formats=FORMATS,
       gzipped=st.booleans())
def test_any_json_document(server: Server, route: str, doc: Any, signature: str | None,
                           formats: dict[str, str], gzipped: bool) -> None:
    body = _json_body(_with_signature(doc, signature))
    headers = {k: v for k, v in formats.items() if k != "Content-Type"}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    check(server, route, body, headers)


@PROPERTY
@given(route=ROUTES, doc=mp_documents, signature=st.none() | SIGNATURES,
       accept=st.sampled_from([None, "application/json", "application/msgpack"]),
       gzipped=st.booleans())
def test_any_msgpack_document(server: Server, route: str, doc: Any, signature: str | None,
                              accept: str | None, gzipped: bool) -> None:
    body = _msgpack_body(_with_signature(doc, signature))
    headers = {"Content-Type": "application/msgpack"}
    if accept is not None:
        headers["Accept"] = accept
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    check(server, route, body, headers)


@PROPERTY
@given(route=ROUTES, body=st.binary(max_size=200), formats=FORMATS,
       encoding=st.sampled_from([None, "gzip", "gzip-cut"]))
def test_any_bytes(server: Server, route: str, body: bytes, formats: dict[str, str],
                   encoding: str | None) -> None:
    headers = dict(formats)
    if encoding is not None:
        headers["Content-Encoding"] = "gzip"
        if encoding == "gzip-cut":
            whole = gzip.compress(body)
            body = whole[:len(whole) // 2]
        elif body[:2] != b"\x1f\x8b":  # arbitrary bytes, sometimes as a gzip header
            body = b"\x1f\x8b\x08\x00" + body
    check(server, route, body, headers)


# Well-formed requests cut and flipped at random: the bodies that get furthest in.
SEEDS = [
    _json_body({"instances": [[1.0], [2.0]]}),
    _json_body({"inputs": {"x": [[1.0]]}, "signature_name": "serving_default"}),
    _json_body({"signature_name": "classify_x_to_y", "context": {"c": 1},
                "examples": [{"x": [2.0]}, {"x": {"b64": "AAAA"}}]}),
    _msgpack_body({"instances": {"dtype": "float32", "shape": [1, 1],
                                 "data": b"\x00\x00\x00@"}}),
    _msgpack_body({"signature_name": "regress_x_to_y", "examples": [{"x": 2.0, "y": b"z"}]}),
]


@PROPERTY
@given(route=ROUTES, seed=st.sampled_from(range(len(SEEDS))),
       edits=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.integers(1, 130), gzipped=st.booleans())
def test_mutated_requests(server: Server, route: str, seed: int,
                          edits: list[tuple[int, int]], cut: int, gzipped: bool) -> None:
    body = bytearray(SEEDS[seed])
    for i, byte in edits:
        if i < len(body):
            body[i] = byte
    data = bytes(body[:cut])
    headers = {"Content-Type": "application/msgpack"} if seed >= 3 else {}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    check(server, route, data, headers)


def test_the_property_check_sees_a_5xx(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract check itself: a handler failure (a 500) is caught by it."""
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("tfsfast.codecs.examples_codec.parse_classify_regress_request", broken)
    with pytest.raises(AssertionError, match=r"\(500, "):
        check(server, "/v1/models/m:regress", b'{"examples": [{}]}', {})
