"""Exports the small models that the demo, the tests and the benchmarks serve.

Made with TensorFlow itself (as TF Serving's own export scripts make its test models), so a clone
without ``../shared/testdata`` can still test and serve. ``python -m tfsfast.testing.export_models
DIR`` writes ``DIR/half_plus_two/1``.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _tf() -> Any:
    import tensorflow as tf

    return tf


def export_half_plus_two_tf2(export_dir: str, a: float = 0.5, b: float = 2.0,
                             jit_compile: bool = False) -> str:
    """y = a*x + b with ``tf.saved_model.save``; signature ``serving_default``: x float [-1] → y.

    The input takes any number of scalars, so ``{"instances": [1.0, 2.0, 5.0]}`` answers
    ``{"predictions": [2.5, 3.0, 4.5]}``. With ``jit_compile`` the function must be compiled by
    XLA (``tf.function(jit_compile=True)``): it runs only where XLA compilation is allowed.
    """
    tf = _tf()

    module_base: Any = tf.Module  # a variable: a type checker knows no tf
    class HalfPlusTwo(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")],
                     jit_compile=jit_compile)
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": self.a * x + self.b}

    module = HalfPlusTwo()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir


def export_half_plus_two_tf2_classify_regress(export_dir: str, a: float = 0.5,
                                              b: float = 2.0) -> str:
    """y = a*x + b with ``tf.saved_model.save``, with the tf.Example signatures of TF Serving's
    native TF2 test export (``saved_model_half_plus_two_tf2_cpu``).

    Signatures: ``serving_default`` (x float [1] → y), ``regress_x_to_y`` (string [-1]
    ``inputs`` → ``outputs``) and ``classify_x_to_y`` (→ ``scores``); the examples hold a float
    feature ``x``. As in every TF2 export, each signature reads its own input placeholder, and
    the method names are all ``tensorflow/serving/predict``.
    """
    tf = _tf()
    features = {"x": tf.io.FixedLenFeature([1], tf.float32)}
    examples = tf.TensorSpec([None], tf.string, name="inputs")

    module_base: Any = tf.Module  # a variable: a type checker knows no tf
    class HalfPlusTwo(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
        def predict(self, x: Any) -> dict[str, Any]:
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[examples])
        def regress(self, serialized: Any) -> dict[str, Any]:
            x = tf.io.parse_example(serialized, features)["x"]
            return {"outputs": self.a * x + self.b}

        @tf.function(input_signature=[examples])
        def classify(self, serialized: Any) -> dict[str, Any]:
            x = tf.io.parse_example(serialized, features)["x"]
            return {"scores": self.a * x + self.b}

    module = HalfPlusTwo()
    tf.saved_model.save(module, export_dir, signatures={
        "serving_default": module.predict, "regress_x_to_y": module.regress,
        "classify_x_to_y": module.classify})
    return export_dir


def export_half_plus_two_tf1(export_dir: str, a: float = 0.5, b: float = 2.0) -> str:
    """The TF1-style export TF Serving's tests use: a SavedModelBuilder graph with variables.

    Signatures: ``serving_default`` (predict, x float [-1, 1] → y), ``regress_x_to_y``
    (tf.Example ``inputs`` → ``outputs``) and ``classify_x_to_y`` (→ ``scores``); the examples
    hold a float feature ``x``.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        x_example = tf.identity(features["x"], name="x_example")
        x = v1.placeholder(tf.float32, shape=[None, 1], name="x")
        va = v1.Variable(a, name="a")
        vb = v1.Variable(b, name="b")
        y = tf.add(tf.multiply(va, x), vb, name="y")
        y_example = tf.add(tf.multiply(va, x_example), vb, name="y_example")
        sig = v1.saved_model.signature_def_utils
        info = v1.saved_model.utils.build_tensor_info
        predict = sig.build_signature_def({"x": info(x)}, {"y": info(y)},
                                          "tensorflow/serving/predict")
        regress = sig.build_signature_def({"inputs": info(serialized)},
                                          {"outputs": info(y_example)},
                                          "tensorflow/serving/regress")
        classify = sig.build_signature_def({"inputs": info(serialized)},
                                           {"scores": info(y_example)},
                                           "tensorflow/serving/classify")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                session, ["serve"],
                signature_def_map={"serving_default": predict, "regress_x_to_y": regress,
                                   "classify_x_to_y": classify})
            builder.save()
    return export_dir


def ensure_demo_model(models_dir: str) -> str:
    """``models_dir/half_plus_two`` with version 1, exported on first use; returns the base."""
    base = os.path.join(os.path.abspath(models_dir), "half_plus_two")
    version_dir = os.path.join(base, "1")
    if not os.path.exists(os.path.join(version_dir, "saved_model.pb")):
        tmp = version_dir + ".tmp"
        export_half_plus_two_tf2(tmp)
        os.rename(tmp, version_dir)  # the server never sees a half-written version
    return base


if __name__ == "__main__":
    print(ensure_demo_model(sys.argv[1] if len(sys.argv) > 1 else "models"))


def export_multi_io(export_dir: str) -> str:
    """A predict signature with several inputs and outputs of several dtypes (TF1 builder).

    ``serving_default``: inputs ``a`` float [-1, 2], ``b`` int64 [-1], ``s`` string [-1];
    outputs ``total`` float [-1] (a[:, 0] + a[:, 1] + b), ``positive`` bool [-1] (b > 0),
    ``s_bytes`` string [-1] (s, so REST writes it as b64) and ``text`` string [-1] (s again).
    ``scalar``: input ``x`` float [] → ``y`` float [] (2·x), for bare columnar values.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.placeholder(tf.float32, shape=[None, 2], name="a")
        b = v1.placeholder(tf.int64, shape=[None], name="b")
        s = v1.placeholder(tf.string, shape=[None], name="s")
        total = tf.add(tf.reduce_sum(a, axis=1), tf.cast(b, tf.float32), name="total")
        positive = tf.greater(b, 0, name="positive")
        s_bytes = tf.identity(s, name="s_bytes")
        text = tf.identity(s, name="text")
        x = v1.placeholder(tf.float32, shape=[], name="x")
        y = tf.multiply(x, 2.0, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": build(
                {"a": info(a), "b": info(b), "s": info(s)},
                {"total": info(total), "positive": info(positive), "s_bytes": info(s_bytes),
                 "text": info(text)}, "tensorflow/serving/predict"),
            "scalar": build({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
        }
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(session, ["serve"],
                                                 signature_def_map=signatures)
            builder.save()
    return export_dir
