"""Models made with TensorFlow for the runtime's tests and benchmark.

Each ``export_*`` function writes one SavedModel version directory (``export_dir``, which must not
exist yet) and returns it. They need no files from outside the repository, so the tests run on a
clone without ``../shared/testdata``; where TF Serving's test data has the same model, the export
here has the same signatures and shapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

# (signature key, DataType name) of every dtype the dtype round-trip model serves.
ROUND_TRIP_DTYPES: tuple[str, ...] = (
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
    "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "string")


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _save_tf1(export_dir: str, graph: Any, signatures: dict[str, Any]) -> str:
    tf = _tf()
    v1 = tf.compat.v1
    with graph.as_default(), v1.Session(graph=graph) as session:
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(export_dir)
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    return export_dir


def _signature(inputs: dict[str, Any], outputs: dict[str, Any],
               method: str = "tensorflow/serving/predict") -> Any:
    """A SignatureDef; call inside the graph's ``as_default()``."""
    v1 = _tf().compat.v1
    info = v1.saved_model.utils.build_tensor_info
    return v1.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, method)


def export_half_plus_two_tf1(export_dir: str) -> str:
    """TF1 (SavedModelBuilder) half_plus_two: ``serving_default`` x float [-1, 1] -> y = x/2 + 2.

    As TF Serving's ``saved_model_half_plus_two_cpu``: ``x:0`` -> ``y:0``, variables a and b.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None, 1], name="x")
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        y = tf.add(tf.multiply(a, x), b, name="y")
        signatures = {"serving_default": _signature({"x": x}, {"y": y})}
    return _save_tf1(export_dir, graph, signatures)


def export_half_plus_two_tf2(export_dir: str) -> str:
    """TF2 (``tf.saved_model.save``) half_plus_two: ``serving_default`` x float [1] -> y.

    As TF Serving's ``saved_model_half_plus_two_tf2_cpu``: resource variables, a
    StatefulPartitionedCall, and the ``__saved_model_init_op`` signature TF2 exports carry.
    """
    tf = _tf()

    module_base: Any = tf.Module  # a variable: a type checker knows no tf
    class HalfPlusTwo(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": self.a * x + self.b}

    module = HalfPlusTwo()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir


def export_dtype_round_trip(export_dir: str) -> str:
    """One signature per name in ``ROUND_TRIP_DTYPES``: input ``x`` of that dtype (any shape).

    Outputs: ``identity`` (x itself: TensorFlow hands back the fed buffer, still shared) and
    ``concat`` (x twice along axis 0, in a buffer TensorFlow allocates; needs rank >= 1).
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    signatures = {}
    with graph.as_default():
        for name in ROUND_TRIP_DTYPES:
            x = v1.placeholder(tf.as_dtype(name), name=f"x_{name}")
            identity = tf.identity(x, name=f"identity_{name}")
            concat = tf.concat([x, x], axis=0, name=f"concat_{name}")
            signatures[name] = _signature({"x": x}, {"identity": identity, "concat": concat})
    return _save_tf1(export_dir, graph, signatures)


def export_counter(export_dir: str) -> str:
    """A stateful counter (float), as TF Serving's ``saved_model_counter``.

    Signatures: ``incr_counter`` (adds 1, returns the new value), ``incr_counter_by`` (input
    ``delta``), ``get_counter``, ``reset_counter`` (to 0); all output ``output``. Updates lock
    the variable, so concurrent increments are never lost.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        counter = v1.Variable(0.0, name="counter", use_resource=False)
        delta = v1.placeholder(tf.float32, shape=[], name="delta")
        incr = v1.assign_add(counter, 1.0, use_locking=True, name="incr_counter_op")
        incr_by = v1.assign_add(counter, delta, use_locking=True, name="incr_counter_by_op")
        reset = v1.assign(counter, 0.0, use_locking=True, name="reset_counter_op")
        read = tf.identity(counter, name="get_counter_op")
        signatures = {
            "incr_counter": _signature({}, {"output": incr}),
            "incr_counter_by": _signature({"delta": delta}, {"output": incr_by}),
            "get_counter": _signature({}, {"output": read}),
            "reset_counter": _signature({}, {"output": reset}),
        }
    return _save_tf1(export_dir, graph, signatures)


def export_slow(export_dir: str) -> str:
    """Signatures that take as long as asked, for timeouts; no Python runs inside the graph.

    - ``blocked``: output ``y`` = a dequeue from an always-empty queue; it waits until the run
      is cancelled (i.e. until its timeout).
    - ``busy``: input ``n`` (int64 scalar); output ``y`` = a while-loop counting to n, which
      computes in the running thread for as long as n says.
    - ``fast``: input ``x`` float; output ``y`` = x + 1.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        queue = v1.FIFOQueue(1, [tf.float32], shapes=[[]], name="never_filled")
        blocked = tf.identity(queue.dequeue(), name="blocked")
        n = v1.placeholder(tf.int64, shape=[], name="n")
        busy = v1.while_loop(lambda i: i < n, lambda i: i + 1,
                             [tf.constant(0, tf.int64)], name="count")
        busy = tf.identity(busy, name="busy")
        x = v1.placeholder(tf.float32, name="x")
        fast = tf.add(x, 1.0, name="fast")
        signatures = {
            "blocked": _signature({}, {"y": blocked}),
            "busy": _signature({"n": n}, {"y": busy}),
            "fast": _signature({"x": x}, {"y": fast}),
        }
    return _save_tf1(export_dir, graph, signatures)


def export_mlp(export_dir: str, layers: Sequence[int] = (784, 512, 512, 10),
               seed: int = 0) -> str:
    """A dense ReLU network with a softmax head (by default 784-512-512-10, an MNIST MLP).

    TF2 export; ``serving_default``: ``x`` float [-1, layers[0]] -> ``probabilities``
    [-1, layers[-1]]. Weights are seeded, so two exports with one seed are the same model.
    """
    tf = _tf()
    rng = tf.random.Generator.from_seed(seed)

    module_base: Any = tf.Module  # a variable: a type checker knows no tf
    class MLP(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.weights = [tf.Variable(rng.normal([m, n], stddev=(2.0 / m) ** 0.5),
                                        name=f"w{i}")
                            for i, (m, n) in enumerate(itertools.pairwise(layers))]
            self.biases = [tf.Variable(tf.zeros([n]), name=f"b{i}")
                           for i, n in enumerate(layers[1:])]

        @tf.function(input_signature=[tf.TensorSpec([None, layers[0]], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                x = tf.matmul(x, w) + b
                if i < len(self.weights) - 1:
                    x = tf.nn.relu(x)
            return {"probabilities": tf.nn.softmax(x)}

    module = MLP()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir


def export_tflite_half_plus_two(export_dir: str, signatures: str = "none") -> str:
    """``<export_dir>/model.tflite``: y = x/2 + 2 on x float [1, 1], with signatures as asked.

    ``signatures``: ``"none"`` (no SignatureDefs at all, as TF Serving's
    ``saved_model_half_plus_two_tflite``), ``"tflite"`` (the converter's own ``serving_default``
    signature, x -> y) or ``"embedded"`` (as ``saved_model_half_plus_two_tflite_with_sigdef``: a
    serialized ``serving_default`` SignatureDef, x -> y, in the ``signature_defs_metadata``
    FlexBuffer, naming tensors ``tflite_input:0`` and ``y:0``; stored as a blob where TF
    Serving's tool writes a string, which readers take alike).
    """
    import os

    import flatbuffers
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    tf = _tf()

    module_base: Any = tf.Module  # a variable: a type checker knows no tf
    class HalfPlusTwo(module_base):
        @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": tf.add(tf.multiply(x, 0.5), 2.0, name="y")}

    module = HalfPlusTwo()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    model = converter.convert()
    if signatures != "tflite":
        flat = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
        flat.signatureDefs = None
        subgraph = flat.subgraphs[0]
        # Name the tensors as TF Serving's test models do, whatever the converter chose.
        input_name = "tflite_input" if signatures == "embedded" else "x"
        subgraph.tensors[subgraph.inputs[0]].name = input_name.encode()
        subgraph.tensors[subgraph.outputs[0]].name = b"y"
        if signatures == "embedded":
            v1 = tf.compat.v1
            with tf.Graph().as_default():
                x = v1.placeholder(tf.float32, [1, 1], name=input_name)
                y = tf.identity(x, name="y")
                sigdef = _signature({"x": x}, {"y": y})
            fbb = flexbuffers.Builder()
            with fbb.Map():
                fbb.Blob("serving_default", sigdef.SerializeToString())
            buffer = schema.BufferT()
            buffer.data = list(fbb.Finish())
            flat.buffers.append(buffer)
            metadata = schema.MetadataT()
            metadata.name = b"signature_defs_metadata"
            metadata.buffer = len(flat.buffers) - 1
            flat.metadata = [*(flat.metadata or []), metadata]
        builder = flatbuffers.Builder(1024)
        builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
        model = bytes(builder.Output())
    os.makedirs(export_dir, exist_ok=True)
    with open(os.path.join(export_dir, "model.tflite"), "wb") as f:
        f.write(model)
    return export_dir
