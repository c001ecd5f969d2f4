"""``python -m bench codecs``: tfsfast's JSON and msgpack tensor codecs against orjson and memcpy.

For float32 and int64 tensors of 1000x100 and 8x3x224x224 elements it measures ns per element
of:

- JSON decode: ``JsonCodec.parse_predict_request`` of a ``{"instances": ...}`` body (the body
  orjson writes for the array, as a Python client would send it) against the usual Python
  approach, ``np.asarray(orjson.loads(body)["instances"], dtype)``;
- JSON encode: ``JsonCodec.format_predict_response`` (TF Serving's float text, ``{"predictions":
  ...}``) against ``orjson.dumps({"predictions": a}, option=orjson.OPT_SERIALIZE_NUMPY)``;
- msgpack decode and encode: ``MsgpackCodec`` with the tensor as a tensor map (raw bytes), against
  a ``memcpy`` of the tensor's bytes into a preallocated buffer (``np.copyto``); the Python twin
  (the ``msgpack`` package's C extension + ``np.frombuffer``) is measured too, to show what the
  compiled module adds.

Each figure is the fastest of many short timing windows (~30 ms, at least one call), over
``--rounds`` rounds that interleave all the paths of a tensor (so a noisy neighbour, which only
ever adds time, is filtered out rather than charged to one path). The collector is frozen after
set-up, as a server does after start-up; OpenBLAS is kept to one thread (nothing here uses it,
but its idle threads spin on a shared 2-core machine).

The last line printed is a JSON object with every figure and the ratios (worst case over the
tensors): ``json_decode_speedup_vs_orjson_numpy`` (target >= 3), ``json_encode_speedup_vs_orjson``
(target >= 1) and ``msgpack_fraction_of_memcpy`` = memcpy time / (decode + encode time), i.e. the
codec's bandwidth as a fraction of memcpy's (target >= 0.5).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see the docstring

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from tfsfast.codecs import _msgpack_py, json_codec, msgpack_codec
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.runtime.dtypes import DataType

SHAPES = ((1000, 100), (8, 3, 224, 224))
DTYPES = (("float32", np.float32, DataType.DT_FLOAT), ("int64", np.int64, DataType.DT_INT64))
WINDOW_S = 0.030
TARGETS = {"json_decode_speedup_vs_orjson_numpy": 3.0, "json_encode_speedup_vs_orjson": 1.0,
           "msgpack_fraction_of_memcpy": 0.5}


def fastest_per_call(fn: Callable[[], Any], windows: int) -> float:
    """Seconds per call: the fastest of ``windows`` windows of about WINDOW_S each."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    calls = max(1, int(WINDOW_S / max(once, 1e-9)))
    best = once
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def make_tensor(np_dtype: type, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if np_dtype is np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(-1_000_000, 1_000_000, shape, dtype=np.int64)


def measure(name: str, a: np.ndarray, dtype: DataType, rounds: int, windows: int,
            orjson: Any) -> dict[str, float]:
    """ns per element of every path for tensor ``a``."""
    n = a.size
    lookup = {"x": dtype}.get

    def input_dtypes(_signature: str) -> dict[str, DataType]:
        return {"x": dtype}

    json_body = orjson.dumps({"instances": a}, option=orjson.OPT_SERIALIZE_NUMPY)
    mp_body = msgpack.packb({"instances": {"dtype": a.dtype.name, "shape": list(a.shape),
                                           "data": a.tobytes()}}, use_bin_type=True)
    dst = np.empty_like(a)
    # The codecs as the server makes them (its limits are the defaults).
    jc = json_codec.JsonCodec(DEFAULT_CODEC_LIMITS)
    mc = msgpack_codec.MsgpackCodec(DEFAULT_CODEC_LIMITS)
    twin = _msgpack_py.MsgpackCodec(DEFAULT_CODEC_LIMITS)

    # Sanity: every path computes the same thing.
    ours = jc.parse_predict_request(json_body, input_dtypes).inputs["x"]
    np.testing.assert_array_equal(ours, np.asarray(orjson.loads(json_body)["instances"], a.dtype))
    text = jc.format_predict_response({"y": a}, False)
    np.testing.assert_array_equal(np.asarray(orjson.loads(text)["predictions"], a.dtype), a)
    got = mc.parse_predict_request(mp_body, input_dtypes).inputs["x"]
    np.testing.assert_array_equal(got, a)
    assert (mc.format_predict_response({"y": a}, False)
            == twin.format_predict_response({"y": a}, False))
    del ours, text, got, lookup

    paths: dict[str, Callable[[], Any]] = {
        "json_decode_tfsfast": lambda: jc.parse_predict_request(json_body, input_dtypes),
        "json_decode_orjson_numpy": lambda: np.asarray(orjson.loads(json_body)["instances"],
                                                       a.dtype),
        "json_encode_tfsfast": lambda: jc.format_predict_response({"y": a}, False),
        "json_encode_orjson": lambda: orjson.dumps({"predictions": a},
                                                   option=orjson.OPT_SERIALIZE_NUMPY),
        "msgpack_decode_tfsfast": lambda: mc.parse_predict_request(mp_body, input_dtypes),
        "msgpack_encode_tfsfast": lambda: mc.format_predict_response({"y": a}, False),
        "msgpack_decode_twin": lambda: twin.parse_predict_request(mp_body, input_dtypes),
        "msgpack_encode_twin": lambda: twin.format_predict_response({"y": a}, False),
        "memcpy": lambda: np.copyto(dst, a),
    }
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(rounds):
        for key, fn in paths.items():
            best[key] = min(best[key], fastest_per_call(fn, windows))
    ns = {key: seconds * 1e9 / n for key, seconds in best.items()}
    ns["json_decode_speedup"] = ns["json_decode_orjson_numpy"] / ns["json_decode_tfsfast"]
    ns["json_encode_speedup"] = ns["json_encode_orjson"] / ns["json_encode_tfsfast"]
    ns["msgpack_fraction_of_memcpy"] = ns["memcpy"] / (ns["msgpack_decode_tfsfast"]
                                                       + ns["msgpack_encode_tfsfast"])
    ns["msgpack_twin_fraction_of_memcpy"] = ns["memcpy"] / (ns["msgpack_decode_twin"]
                                                            + ns["msgpack_encode_twin"])
    ns["json_body_bytes"] = len(json_body)
    ns["elements"] = n
    return ns


def report(name: str, r: dict[str, float]) -> None:
    print(f"{name}: {r['elements']:,} elements, JSON body {r['json_body_bytes'] / 1e6:.2f} MB",
          flush=True)
    print(f"  JSON decode   tfsfast {r['json_decode_tfsfast']:8.2f} ns/elem   "
          f"orjson+np.asarray {r['json_decode_orjson_numpy']:8.2f}   "
          f"speedup {r['json_decode_speedup']:.2f}x")
    print(f"  JSON encode   tfsfast {r['json_encode_tfsfast']:8.2f} ns/elem   "
          f"orjson numpy      {r['json_encode_orjson']:8.2f}   "
          f"speedup {r['json_encode_speedup']:.2f}x")
    print(f"  msgpack       decode  {r['msgpack_decode_tfsfast']:8.3f} ns/elem   "
          f"encode {r['msgpack_encode_tfsfast']:.3f}   memcpy {r['memcpy']:.3f}   "
          f"fraction of memcpy {r['msgpack_fraction_of_memcpy']:.2f}")
    print(f"  msgpack twin  decode  {r['msgpack_decode_twin']:8.3f} ns/elem   "
          f"encode {r['msgpack_encode_twin']:.3f}   "
          f"fraction of memcpy {r['msgpack_twin_fraction_of_memcpy']:.2f}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench codecs", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--windows", type=int, default=3,
                        help="timing windows per path per round (default 3)")
    parser.add_argument("--quick", action="store_true", help="only the 1000x100 tensors")
    args = parser.parse_args(argv)
    try:
        import orjson
    except ImportError:
        print("orjson is needed for the baselines: pip install orjson", file=sys.stderr)
        return 2

    impls = {"json": json_codec.IMPLEMENTATION, "msgpack": msgpack_codec.IMPLEMENTATION}
    print(f"codecs: json {impls['json']}, msgpack {impls['msgpack']}", flush=True)
    if json_codec.IMPLEMENTATION != "compiled":
        print("warning: the compiled JSON codec is not in use (build it, or unset "
              "TFSFAST_NO_EXTENSIONS)", file=sys.stderr)
    rng = np.random.default_rng(0)
    tensors = [(f"{dname}[{'x'.join(map(str, shape))}]", make_tensor(np_dtype, shape, rng), dt)
               for shape in (SHAPES[:1] if args.quick else SHAPES)
               for dname, np_dtype, dt in DTYPES]
    gc.collect()
    gc.freeze()
    results: dict[str, dict[str, float]] = {}
    for name, a, dt in tensors:
        results[name] = r = measure(name, a, dt, args.rounds, args.windows, orjson)
        report(name, r)
    summary: dict[str, Any] = {
        "json_decode_speedup_vs_orjson_numpy": round(
            min(r["json_decode_speedup"] for r in results.values()), 3),
        "json_encode_speedup_vs_orjson": round(
            min(r["json_encode_speedup"] for r in results.values()), 3),
        "msgpack_fraction_of_memcpy": round(
            min(r["msgpack_fraction_of_memcpy"] for r in results.values()), 3),
        "msgpack_twin_fraction_of_memcpy": round(
            min(r["msgpack_twin_fraction_of_memcpy"] for r in results.values()), 3),
    }
    summary["targets_met"] = {key: summary[key] >= target for key, target in TARGETS.items()}
    summary["targets"] = TARGETS
    summary["impls"] = impls
    summary["ns_per_element"] = {name: {k: round(v, 3) for k, v in r.items()}
                                 for name, r in results.items()}
    print(json.dumps(summary, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
