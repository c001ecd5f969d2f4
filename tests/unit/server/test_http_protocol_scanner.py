"""The compiled protocol's head scanner against httptools: the same requests, the same bytes.

The scanner serves plain JSON POSTs without parser callbacks when the fast path is the compiled
``RestFastPath``. Each case feeds the same bytes, in the same packets, to the compiled protocol
with the scanner and to the Python twin (httptools only), both with a fast path that declines
everything, so every request reaches the recording handler: what the handler sees, what is
written, and whether the connection is closed or paused must agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfsfast import _extensions
from tfsfast.server.http import _http_protocol_py as http_protocol
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, HttpServerLimits
from tfsfast.server.http._rest_fast_path_py import RestFastPath as TwinFastPath

if _extensions.NO_EXTENSIONS:
    pytest.skip("TFSFAST_NO_EXTENSIONS is set: no compiled protocol", allow_module_level=True)

from tfsfast.server.http import _http_protocol as compiled
from tfsfast.server.http import _rest_fast_path as compiled_fast_path
from tfsfast.testing.fake_transport import FakeTransport


def nobody(name: str, version: int | None, policy: int) -> None:
    return None  # no model: the fast path declines every request


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def run(protocol_module: Any, fast_path: Any, packets: list[bytes],
        limits: HttpServerLimits | None = None) -> tuple[list[tuple], bytes, bool, bool, Any]:
    seen: list[tuple] = []

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append((request.method, request.path, request.headers, request.body,
                     request.keep_alive))
        return HttpResponse(200, json.dumps(len(seen)).encode())

    protocol = protocol_module.HttpProtocol(
        handler, limits or HttpServerLimits(), error_response, None, fast_path)
    transport = FakeTransport()
    protocol.connection_made(transport)
    for packet in packets:
        protocol.data_received(packet)
    return seen, bytes(transport.data), transport.closed, transport.paused, protocol


def agree(packets: list[bytes], limits: HttpServerLimits | None = None) -> Any:
    """Runs both; asserts they agree; returns the scanning protocol (for its counter)."""
    *scanned, protocol = run(compiled, compiled_fast_path.RestFastPath(nobody), packets, limits)
    *reference, _ = run(http_protocol, TwinFastPath(nobody), packets, limits)
    assert scanned == reference
    return protocol


def request(method: bytes = b"POST", target: bytes = b"/v1/models/m:predict",
            version: bytes = b"HTTP/1.1", headers: list[tuple[bytes, bytes]] | None = None,
            body: bytes = b'{"instances": [[1.0]]}', length: bool = True) -> bytes:
    lines = [method + b" " + target + b" " + version]
    for name, value in headers if headers is not None else [(b"Host", b"x")]:
        lines.append(name + b": " + value)
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_the_common_request_is_scanned() -> None:
    raw = request(headers=[(b"Host", b"127.0.0.1:8501"), (b"Content-Type", b"application/json"),
                           (b"Accept", b"*/*"), (b"User-Agent", b"wrk")])
    protocol = agree([raw, raw + raw])
    assert protocol.scanned_requests == 3


@pytest.mark.parametrize("raw", [
    request(method=b"GET"),
    request(method=b"PUT"),
    request(version=b"HTTP/1.0"),
    request(target=b"/v1/models/m:predict#frag"),
    request(target=b'/v1/"m"'),
    request(target=b"http://h/v1/models/m:predict"),
    request(headers=[(b"Content-Type", b"application/msgpack")]),
    request(headers=[(b"Content-Type", b"application/json; x=msgpack")]),
    request(headers=[(b"Content-Type", b"application/json"), (b"Content-Type", b"text/x")]),
    request(headers=[(b"Accept", b"application/msgpack")]),
    request(headers=[(b"Accept", b"*/*"), (b"accept", b"*/*")]),
    request(headers=[(b"Content-Encoding", b"gzip")]),
    request(headers=[(b"Transfer-Encoding", b"chunked")], body=b"3\r\nabc\r\n0\r\n\r\n",
            length=False),
    request(headers=[(b"Upgrade", b"h2c"), (b"Connection", b"Upgrade")]),
    request(headers=[(b"Connection", b"keep-alive, Upgrade")]),
    request(target=b"/v2/models/m/infer",
            headers=[(b"Inference-Header-Content-Length", b"22")]),
    request(headers=[(b"X-Empty", b"")]),
    request(headers=[(b"X-Pad", b"a ")]),
    request(headers=[(b"X-Ctl", b"a\x01b")]),
    request(headers=[(b"X-Latin", b"caf\xe9")]),
    request(headers=[(b"Bad Name", b"v")]),
    request(headers=[(b"Content-Length", b"2")]),
    request(headers=[(b"Content-Length", b"+5")], body=b"", length=False),
    b"POST /v1/models/m:predict HTTP/1.1\nHost: x\n\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"\r\n" + request(),
    request()[:-3],
])
def test_requests_the_scanner_leaves_to_httptools(raw: bytes) -> None:
    protocol = agree([raw])
    assert protocol.scanned_requests == 0
    agree([raw + request()])  # and whatever follows them
    agree([request() + raw])


@pytest.mark.parametrize("raw", [
    request(headers=[(b"Connection", b"close")]),
    request(headers=[(b"Connection", b"Close")]),
    request(headers=[(b"Connection", b"keep-alive")]),
    request(headers=[(b"X-A", b"1"), (b"x-a", b"2"), (b"X-A", b"3")]),
    request(headers=[(b"Content-Type", b"\tApplication/JSON ;charset=utf-8")]),
    request(headers=[(b"Accept", b"application/json")]),
    request(headers=[]),
    request(body=b"", length=False),
    request(body=b"", length=True),
    request(target=b"/v1/models/m/versions/3:predict?a=1&b=%20"),
    request(method=b"POST", target=b"/anything"),
    request(headers=[(b"Content-Length", b"0007")], body=b"abcdefg", length=False),
    request(headers=[(b"Host", b"x"), (b"X-Spaces", b"a  b\tc")]),
])
def test_requests_the_scanner_takes(raw: bytes) -> None:
    protocol = agree([raw])
    assert protocol.scanned_requests == 1
    agree([raw + request(), request()])


@pytest.mark.parametrize("limits", [
    HttpServerLimits(max_url_bytes=10),
    HttpServerLimits(max_header_count=2),
    HttpServerLimits(max_header_bytes=30),
    HttpServerLimits(max_body_bytes=5),
    HttpServerLimits(max_pipelined_requests=0),
])
def test_limits_within_reach_are_httptools_business(limits: HttpServerLimits) -> None:
    raw = request(headers=[(b"Host", b"x"), (b"X-A", b"y")])
    protocol = agree([raw, raw], limits)
    assert protocol.scanned_requests == 0


def test_split_requests_and_pipelines_agree() -> None:
    raw = request() + request(headers=[(b"Connection", b"close")]) + request()
    for size in (1, 7, 50, len(raw)):
        agree([raw[i:i + size] for i in range(0, len(raw), size)])


def test_a_failing_transport_write_is_answered_as_httptools_does() -> None:
    class Broken(FakeTransport):
        def write(self, data: bytes) -> None:
            if not self.closed and data.startswith(b"HTTP/1.1 200"):
                raise OSError("boom")
            super().write(data)

    results = []
    for module, fast in ((compiled, compiled_fast_path.RestFastPath(nobody)),
                         (http_protocol, TwinFastPath(nobody))):
        protocol = module.HttpProtocol(lambda r: HttpResponse(200, b"x"), HttpServerLimits(),
                                       error_response, None, fast)
        transport = Broken()
        protocol.connection_made(transport)
        protocol.data_received(request())
        results.append((bytes(transport.data), transport.closed))
    assert results[0] == results[1]
    assert results[0][1] and b"400 Bad Request" in results[0][0]


# --- property: random requests, random packets -------------------------------------------------

_TARGET_PIECES = [b"/v1/models/m:predict", b"/", b"a", b"%2", b"?", b"=", b"#", b'"', b" ",
                  b"\x7f", b"\xe9", b"[", b"*", b"~", b";", b":"]
_NAMES = [b"Host", b"Content-Type", b"content-type", b"Accept", b"Content-Encoding",
          b"Connection", b"Transfer-Encoding", b"Upgrade", b"X-A", b"x-a", b"Content-Length",
          b"Bad Name", b"X\x01", b"Expect"]
_VALUES = [b"application/json", b"application/json; charset=utf-8", b" application/json",
           b"application/json ", b"", b"*/*", b"application/msgpack", b"close", b"keep-alive",
           b"Close", b"gzip", b"chunked", b"5", b"0", b"abc", b"\t x \t", b"a\x7fb", b"\xe9",
           b"100-continue", b"12345678901234567890"]


@st.composite
def raw_request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"POST", b"POST", b"POST", b"GET", b"post", b"DELETE"]))
    target = b"".join(draw(st.lists(st.sampled_from(_TARGET_PIECES), min_size=1, max_size=5)))
    if draw(st.booleans()):
        target = b"/" + target
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    sep = draw(st.sampled_from([b": ", b":", b":\t", b" : "]))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n"]))
    headers = draw(st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)),
                            max_size=5))
    body = draw(st.binary(max_size=12))
    length = draw(st.sampled_from(["right", "right", "none", "short", "long"]))
    lines = [method + b" " + target + b" " + version]
    lines += [name + sep + value for name, value in headers]
    if length != "none":
        declared = len(body) + {"right": 0, "short": -1, "long": 3}[length]
        lines.append(b"Content-Length: %d" % max(declared, 0))
    return eol.join(lines) + eol + eol + body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_request(), min_size=1, max_size=3), st.lists(st.integers(1, 60), max_size=4))
def test_random_requests_agree_with_httptools(requests: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(requests)
    packets, pos = [], 0
    for cut in cuts:
        packets.append(stream[pos:pos + cut])
        pos += cut
    packets.append(stream[pos:])
    agree([p for p in packets if p])
