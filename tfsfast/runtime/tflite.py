"""TFLite models (``--prefer_tflite_model``): ``<version>/model.tflite`` as a runtime session.

``load_tflite_model(version_dir, num_pools, num_interpreters_per_pool)`` returns a
:class:`TfLiteSession` with the attributes and methods of a runtime ``SavedModelSession``
(``signatures``, ``meta_graph_def``, ``run``, ``close``), so a servable serves either the same way.
The server calls it instead of ``load_saved_model`` when ``--prefer_tflite_model`` is set and
:func:`tflite_model_found` (TF Serving falls back to the SavedModel otherwise).

Signatures, as TF Serving's ``TfLiteSession``:

- SignatureDefs embedded by TF Serving's tooling (flatbuffer metadata ``signature_defs_metadata``,
  a FlexBuffer map of key to serialized SignatureDef) are served under their keys; their aliases
  map to the TFLite tensors they name (``tflite_input:0`` is tensor ``tflite_input``), and the
  served TensorInfo describes that tensor. A SignatureDef naming a tensor that is not a model
  input/output fails the load.
- Otherwise, SignatureDefs of the TFLite format itself (what today's converter writes) are served
  under their keys, aliases and tensors as the converter named them.
- Otherwise a ``serving_default`` predict signature is synthesized: each model input and output
  under its tensor name.

Interpreters: ``num_pools`` × ``num_interpreters_per_pool`` interpreters of the one model
(TF Serving's ``--num_tflite_pools``, default one per CPU, and
``--num_tflite_interpreters_per_pool``, default 1). A run takes a free interpreter, waiting for
one if all are busy (the wait counts against its timeout), so that many runs go at once without
sharing an interpreter (an interpreter is not thread-safe); the interpreter computes with the GIL
released. Unlike TF Serving, a large batch is not split across pools.

Inputs are checked like the TensorFlow runtime's (:mod:`tfsfast.runtime.validation`); an input
of another shape than the interpreter has resizes it first (then re-allocates its tensors), as
TF Serving does. Outputs are copies. TFLite cannot stop a run midway: a run that outlives
``timeout_in_ms`` completes and then fails with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfsfast.runtime import validation
from tfsfast.runtime.dtypes import DataType, from_numpy
from tfsfast.runtime.signature import (
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    PREDICT_METHOD_NAME,
    Signature,
    parse_tensor_name,
    signatures_from_meta_graph,
)
from tfsfast.util.status import Code, ServingError

IMPLEMENTATION = "tflite"
TFLITE_MODEL_FILENAME = "model.tflite"
SIGNATURE_DEFS_METADATA_NAME = b"signature_defs_metadata"


def tflite_model_found(version_dir: str) -> bool:
    """Whether ``version_dir`` has a ``model.tflite`` (what ``--prefer_tflite_model`` loads)."""
    return os.path.isfile(os.path.join(version_dir, TFLITE_MODEL_FILENAME))


def default_num_pools() -> int:
    """TF Serving's default ``--num_tflite_pools``: the number of schedulable CPUs."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _interpreter_class() -> Any:
    try:  # the LiteRT package, TFLite's successor, when installed
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter


class _Interpreter:
    """One interpreter and the shape each of its inputs is allocated for."""

    def __init__(self, model: bytes) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter warns that LiteRT replaces it
            self.interpreter = _interpreter_class()(model_content=model)
        self.interpreter.allocate_tensors()
        self.input_shapes = {d["index"]: tuple(int(s) for s in d["shape"])
                             for d in self.interpreter.get_input_details()}


def embedded_signature_defs(model: bytes) -> dict[str, bytes]:
    """The serialized SignatureDefs in the model's ``signature_defs_metadata``, by key."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAsModel(model, 0)
    for i in range(root.MetadataLength()):
        metadata = root.Metadata(i)
        if metadata.Name() != SIGNATURE_DEFS_METADATA_NAME:
            continue
        data = root.Buffers(metadata.Buffer()).DataAsNumpy()
        if isinstance(data, int):  # an empty buffer
            return {}
        entries = flexbuffers.GetRoot(bytearray(data.tobytes())).AsMap
        keys, values = entries.Keys, entries.Values
        return {keys[j].AsKey: bytes(values[j].AsStringBytes if values[j].IsString
                                     else values[j].AsBlob)
                for j in range(len(entries))}
    return {}


@dataclass(frozen=True)
class _Binding:
    """How one served signature reaches the interpreter."""

    # Interpreter tensor index of each input / output alias (tensor-index signatures).
    input_index: Mapping[str, int]
    output_index: Mapping[str, int]
    # Key of a TFLite-format signature, run through a signature runner instead.
    runner_key: str | None = None


def _tensor_info(proto: Any, details: Mapping[str, Any]) -> None:
    proto.name = details["name"]
    proto.dtype = from_numpy(details["dtype"])
    proto.tensor_shape.Clear()
    shape = details.get("shape_signature")
    if shape is None or not len(shape):
        shape = details["shape"]
    for size in shape:
        proto.tensor_shape.dim.add().size = int(size)


def _tflite_signatures(model: bytes, interpreter: Any) -> tuple[Any, dict[str, _Binding]]:
    """The MetaGraphDef (signatures only) to serve, and how each signature runs."""
    from tensorflow.core.protobuf import meta_graph_pb2

    meta_graph_def = meta_graph_pb2.MetaGraphDef()
    bindings: dict[str, _Binding] = {}
    inputs = {d["name"]: d for d in interpreter.get_input_details()}
    outputs = {d["name"]: d for d in interpreter.get_output_details()}
    try:
        embedded = embedded_signature_defs(model)
    except Exception as e:  # a malformed FlexBuffer raises whatever its parser hits
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Invalid SignatureDefs found in TfLite model: {e}") from None
    if embedded:
        for key, serialized in embedded.items():
            sigdef = meta_graph_def.signature_def[key]
            embedded_def = meta_graph_pb2.SignatureDef.FromString(serialized)
            sigdef.method_name = embedded_def.method_name
            in_index: dict[str, int] = {}
            out_index: dict[str, int] = {}
            for role, wanted, tensors, index in (
                    ("input", embedded_def.inputs, inputs, in_index),
                    ("output", embedded_def.outputs, outputs, out_index)):
                for alias, info in wanted.items():
                    name = parse_tensor_name(info.name)[0]
                    if name not in tensors:
                        raise ServingError(
                            Code.INVALID_ARGUMENT,
                            f"Signature {role} {alias} references an unknown tensor {name}")
                    _tensor_info((sigdef.inputs if role == "input" else sigdef.outputs)[alias],
                                 tensors[name])
                    index[alias] = tensors[name]["index"]
            bindings[key] = _Binding(in_index, out_index)
        return meta_graph_def, bindings
    native = interpreter.get_signature_list()
    if native:
        for key in native:
            runner = interpreter.get_signature_runner(key)
            sigdef = meta_graph_def.signature_def[key]
            sigdef.method_name = PREDICT_METHOD_NAME
            for alias, details in runner.get_input_details().items():
                _tensor_info(sigdef.inputs[alias], details)
            for alias, details in runner.get_output_details().items():
                _tensor_info(sigdef.outputs[alias], details)
            bindings[key] = _Binding({}, {}, runner_key=key)
        return meta_graph_def, bindings
    sigdef = meta_graph_def.signature_def[DEFAULT_SERVING_SIGNATURE_DEF_KEY]
    sigdef.method_name = PREDICT_METHOD_NAME
    for name, details in inputs.items():
        _tensor_info(sigdef.inputs[name], details)
    for name, details in outputs.items():
        _tensor_info(sigdef.outputs[name], details)
    bindings[DEFAULT_SERVING_SIGNATURE_DEF_KEY] = _Binding(
        {n: d["index"] for n, d in inputs.items()}, {n: d["index"] for n, d in outputs.items()})
    return meta_graph_def, bindings


class _InterpreterPool:
    """Interpreters of one model, each used by one run at a time. Thread-safe."""

    def __init__(self, interpreters: list[Any]) -> None:
        self._free = list(interpreters)
        self._available = threading.Condition()

    def acquire(self, timeout: float | None) -> Any | None:
        """A free interpreter, waiting up to ``timeout`` seconds (forever if None); else None."""
        with self._available:
            if not self._available.wait_for(lambda: self._free, timeout):
                return None
            return self._free.pop()

    def release(self, interpreter: Any) -> None:
        with self._available:
            self._free.append(interpreter)
            self._available.notify()


def _output(value: Any) -> np.ndarray:
    """Strings as the TensorFlow runtime returns them: an object array of bytes."""
    array = np.asarray(value)
    if array.dtype.kind in ("S", "U"):
        out = np.empty(array.size, dtype=object)
        out[:] = [v if isinstance(v, bytes) else str(v).encode("utf-8")
                  for v in array.ravel().tolist()]
        return out.reshape(array.shape)
    return array


class TfLiteSession:
    """A TFLite model served with the runtime session interface (see the module docstring).

    Thread-safety: ``run`` may be called from many threads at once; each run has an interpreter
    to itself. ``close`` drops the interpreters; runs after it fail with CANCELLED.
    """

    def __init__(self, version_dir: str, num_pools: int | None = None,
                 num_interpreters_per_pool: int = 1) -> None:
        path = os.path.join(version_dir, TFLITE_MODEL_FILENAME)
        try:
            with open(path, "rb") as f:
                model = f.read()
        except FileNotFoundError:
            raise ServingError(Code.NOT_FOUND, f"{path}; No such file or directory") from None
        num_pools = default_num_pools() if num_pools is None or num_pools <= 0 else num_pools
        count = num_pools * max(num_interpreters_per_pool, 1)
        try:
            interpreters = [_Interpreter(model) for _ in range(count)]
        except ValueError as e:  # the interpreter's "Model provided has model identifier ..."
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Cannot build Interpreter from buffer: {e}") from None
        self.export_dir = version_dir
        self.meta_graph_def, self._bindings = _tflite_signatures(model,
                                                                 interpreters[0].interpreter)
        self.signatures: dict[str, Signature] = signatures_from_meta_graph(self.meta_graph_def)
        self._pool = _InterpreterPool(interpreters)
        self._closed = False

    def run(self, signature_key: str, inputs: Mapping[str, np.ndarray],
            output_aliases: Sequence[str] | None = None,
            timeout_in_ms: float = 0) -> dict[str, np.ndarray]:
        """Runs one signature; the contract of the runtime's ``SavedModelSession.run``."""
        signature = self.signatures.get(signature_key)
        if signature is None:
            raise validation.signature_not_found(signature_key)
        if self._closed:
            raise validation.session_closed()
        binding = self._bindings[signature_key]
        timeout_in_ms = validation.timeout_ms(timeout_in_ms)
        dtypes = [int(info.dtype) for info in signature.inputs.values()]
        arrays = validation.feed_arrays(signature, inputs, dtypes)
        aliases = validation.fetch_aliases(signature, output_aliases)
        started = time.monotonic()
        interpreter = self._pool.acquire(timeout_in_ms / 1000.0 if timeout_in_ms > 0 else None)
        if interpreter is None:
            raise ServingError(Code.DEADLINE_EXCEEDED, validation.TIMEOUT_MESSAGE)
        try:
            if binding.runner_key is not None:
                results = interpreter.interpreter.get_signature_runner(binding.runner_key)(
                    **dict(zip(signature.inputs, arrays, strict=True)))
                out = {alias: _output(results[alias]) for alias in aliases}
            else:
                out = self._invoke(interpreter, binding, signature, arrays, aliases)
        except (RuntimeError, ValueError) as e:
            raise ServingError(Code.INTERNAL, f"Failed to run interpreter: {e}") from None
        finally:
            self._pool.release(interpreter)
        if timeout_in_ms > 0 and (time.monotonic() - started) * 1000.0 > timeout_in_ms:
            raise ServingError(Code.DEADLINE_EXCEEDED, validation.TIMEOUT_MESSAGE)
        return out

    @staticmethod
    def _invoke(slot: _Interpreter, binding: _Binding, signature: Signature,
                arrays: list[np.ndarray], aliases: Sequence[str]) -> dict[str, np.ndarray]:
        interpreter = slot.interpreter
        resized = False
        for alias, array in zip(signature.inputs, arrays, strict=True):
            index = binding.input_index[alias]
            if slot.input_shapes.get(index) != array.shape:
                interpreter.resize_tensor_input(index, array.shape)
                slot.input_shapes[index] = array.shape
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for alias, array in zip(signature.inputs, arrays, strict=True):
            if signature.inputs[alias].dtype == DataType.DT_STRING:
                array = np.asarray([v.encode("utf-8") if isinstance(v, str) else v
                                    for v in array.ravel().tolist()]).reshape(array.shape)
            interpreter.set_tensor(binding.input_index[alias], array)
        interpreter.invoke()
        return {alias: _output(interpreter.get_tensor(binding.output_index[alias]))
                for alias in aliases}

    def close(self) -> None:
        self._closed = True


def load_tflite_model(version_dir: str, num_pools: int | None = None,
                      num_interpreters_per_pool: int = 1) -> TfLiteSession:
    """Loads ``<version_dir>/model.tflite`` (see the module docstring)."""
    return TfLiteSession(os.fspath(version_dir), num_pools, num_interpreters_per_pool)
