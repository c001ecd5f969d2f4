"""TF Serving's two REST predict formats, shared by the JSON and msgpack codecs.

A predict body names a signature (``signature_name``, empty or missing: ``serving_default``)
and carries its inputs in one of two formats (TF Serving's ``JsonPredictRequestFormat``): *row*,
``instances``, a list of per-example values stacked along a new batch dimension; or *columnar*,
``inputs``, one whole tensor per input alias. The response comes back in the request's format:
``predictions`` for row, ``outputs`` for columnar.

What each codec reads a tensor *from* differs (JSON values with TF Serving's rules and
messages; msgpack tensor maps and plain values); what is the same is here: the request shape
(``predict_request``), the columnar reading (``columnar_inputs``), the row-format checks on the
outputs (``response_outputs``), and small helpers both need. The compiled codecs call their
twins for everything but the well-formed fast path, so they use this module through them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType
from tfsfast.util.status import invalid_argument

DEFAULT_SIGNATURE = "serving_default"

# ``{alias: dtype}`` of the signature -> ``{alias: tensor}``: how a codec reads one format.
ReadTensors = Callable[[Any, dict[str, int]], dict[str, np.ndarray]]


@dataclass(slots=True)
class PredictRequest:
    """A parsed REST predict body.

    ``signature_name`` is never empty (an empty or missing name becomes ``serving_default``);
    ``inputs`` maps each signature input alias to its tensor, whose dtype is the signature's;
    ``columnar`` is True for an ``inputs`` body and False for an ``instances`` body (it decides the
    response format). Slotted: one is made per request. The compiled codecs return
    ``_json.PredictRequest`` instead, a compiled type with the same fields, constructor and
    equality (equal to this one with equal fields).
    """

    signature_name: str
    inputs: dict[str, np.ndarray]
    columnar: bool


class PredictCodec:
    """The Python codecs' shape: a REST predict codec under ``limits`` (a ``CodecLimits``, kept
    for its life). ``parse_predict_request(body, input_dtypes)`` is the subclass's ``parse``
    function under those limits; ``format_predict_response`` and ``format_error`` are its
    module's (no limit applies to them). Thread-safe: it holds nothing but its limits."""

    __slots__ = ("limits",)

    # (body, input_dtypes, limits) -> PredictRequest: the subclass's parser, a staticmethod.
    parse: Callable[[bytes, Callable[[str], Mapping[str, DataType]], CodecLimits],
                    PredictRequest]
    format_predict_response: Callable[..., bytes]
    format_error: Callable[[str], bytes]

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits

    def parse_predict_request(self, body: bytes,
                              input_dtypes: Callable[[str], Mapping[str, DataType]]
                              ) -> PredictRequest:
        return self.parse(body, input_dtypes, self.limits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.limits!r})"


def predict_request(document: Mapping[str, Any], raw_name: str,
                    input_dtypes: Callable[[str], Mapping[str, DataType]],
                    read_instances: ReadTensors, read_inputs: ReadTensors,
                    both_keys_message: Callable[[], str]) -> PredictRequest:
    """The request a decoded body ``document`` makes, TF Serving's ``FillPredictRequestFromJson``
    order: the signature is looked up (``input_dtypes`` is called once, with the name after
    defaulting, and raises for an unknown signature), then exactly one of ``instances`` (read by
    ``read_instances``) or ``inputs`` (``read_inputs``) must be present. ``raw_name`` is the
    ``signature_name`` the codec has already checked is a string. ``both_keys_message`` is the
    codec's text for a body with both keys (only built when it is needed: JSON's echoes the
    body). Errors are ServingError INVALID_ARGUMENT with TF Serving's messages."""
    signature_name = raw_name or DEFAULT_SIGNATURE
    dtypes = {name: int(dt) for name, dt in input_dtypes(signature_name).items()}
    if not dtypes:
        raise invalid_argument(f"Failed to get input map for signature: {raw_name or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise invalid_argument(both_keys_message())
        return PredictRequest(signature_name, read_instances(document["instances"], dtypes),
                              columnar=False)
    if "inputs" in document:
        return PredictRequest(signature_name, read_inputs(document["inputs"], dtypes),
                              columnar=True)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def columnar_inputs(value: Any, dtypes: Mapping[str, int], named: bool,
                    tensor: Callable[[Any, str, int], np.ndarray], container: str,
                    single_message: str) -> dict[str, np.ndarray]:
    """TF Serving's ``FillTensorMapFromInputsMap``: ``value`` is one tensor for a single-input
    signature (``named`` False), or a ``container`` (``"object"``, ``"map"``) of alias ->
    tensor with every input present (extra keys are ignored, as in TF Serving). ``tensor(v,
    alias, dtype)`` reads one tensor; ``single_message`` is the error for a single tensor when
    the signature has several inputs. Inputs are read in sorted alias order."""
    names = sorted(dtypes)
    if not named:
        if len(names) > 1:
            raise invalid_argument(single_message)
        return {names[0]: tensor(value, names[0], dtypes[names[0]])}
    out = {}
    for name in names:
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' {container}.")
        out[name] = tensor(value[name], name, dtypes[name])
    return out


def response_outputs(outputs: Mapping[str, np.ndarray], columnar: bool, format_name: str
                     ) -> tuple[list[str], dict[str, np.ndarray], int]:
    """The aliases (sorted), their arrays and the batch size (-1 for columnar) of a predict
    response, after TF Serving's checks (``MakeJsonFromTensors``): there is an output, and in
    the row format every output has a batch dimension, the same in all. ``format_name`` (JSON,
    msgpack) is named in the error for no outputs."""
    if not outputs:
        raise invalid_argument(f"Cannot convert empty tensor map to {format_name}")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    batch = -1
    if not columnar:
        for name in names:
            a = arrays[name]
            if a.ndim == 0:
                raise invalid_argument(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and a.shape[0] != batch:
                raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                       f"{a.shape[0]} expecting: {batch}")
            batch = a.shape[0]
    return names, arrays, batch


def dense_shape(v: Any) -> list[int]:
    """The shape of nested lists read off the first element at each level (TF's
    ``GetDenseTensorShape``); whether the rest agrees is the reader's to check."""
    shape = []
    while type(v) is list:
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def shape_text(shape: Sequence[int]) -> str:
    """``[2,3]``: a shape as TF Serving's messages write it."""
    return "[" + ",".join(map(str, shape)) + "]"


def string_bytes(x: Any) -> bytes:
    """An element of a string output tensor as the bytes to write (str as UTF-8, lone
    surrogates kept)."""
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    return bytes(x)
