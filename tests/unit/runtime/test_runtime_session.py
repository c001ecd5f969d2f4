"""SavedModelSession: TF1 and TF2 exports, signatures, runs and their errors (both impls)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType
from tfsfast.util.status import Code, ServingError

X = {"x": np.array([[1.0], [2.0], [5.0]], dtype=np.float32)}


def _raises(code: Code, message: str) -> Any:
    """Expects a ServingError with exactly this code and message."""

    class Matcher:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
            assert isinstance(error, ServingError), f"expected ServingError, got {error!r}"
            assert (error.code, error.message) == (code, message)
            return True

    return Matcher()


# -- loading -------------------------------------------------------------------------------------


def test_tf1_export_answers_half_plus_two(runtime: ModuleType, sessions: Any) -> None:
    session = sessions(runtime, "half_plus_two_tf1")
    y = session.run("serving_default", X)["y"]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[2.5], [3.0], [4.5]])


def test_tf2_export_answers_half_plus_two(runtime: ModuleType, sessions: Any) -> None:
    session = sessions(runtime, "half_plus_two_tf2")
    y = session.run("serving_default", {"x": np.array([2.0], dtype=np.float32)})["y"]
    np.testing.assert_array_equal(y, [3.0])


def test_signatures_resolve_aliases_dtypes_and_shapes(runtime: ModuleType,
                                                      sessions: Any) -> None:
    tf1 = sessions(runtime, "half_plus_two_tf1").signatures["serving_default"]
    assert (tf1.inputs["x"].tensor_name, tf1.inputs["x"].dtype, tf1.inputs["x"].shape) == \
        ("x:0", DataType.DT_FLOAT, (-1, 1))
    assert tf1.outputs["y"].tensor_name == "y:0"
    assert tf1.method_name == "tensorflow/serving/predict"
    tf2 = sessions(runtime, "half_plus_two_tf2").signatures["serving_default"]
    assert tf2.inputs["x"].shape == (1,)


def test_tf2_init_op_signature_is_kept_but_has_nothing_to_run(runtime: ModuleType,
                                                               sessions: Any) -> None:
    session = sessions(runtime, "half_plus_two_tf2")
    signature = session.signatures["__saved_model_init_op"]
    assert dict(signature.inputs) == {}
    name = signature.outputs["__saved_model_init_op"].tensor_name
    with _raises(Code.INVALID_ARGUMENT,
                 f"Tensor {name}, the output __saved_model_init_op of signature "
                 f"__saved_model_init_op, is not an output of any operation in the graph"):
        session.run("__saved_model_init_op", {})


def test_meta_graph_def_is_the_loaded_metagraph(runtime: ModuleType, sessions: Any) -> None:
    meta = sessions(runtime, "half_plus_two_tf1").meta_graph_def
    assert list(meta.meta_info_def.tags) == ["serve"]
    assert set(meta.signature_def) == {"serving_default"}


def test_testdata_tf1_and_tf2_exports(runtime: ModuleType, testdata: Path) -> None:
    for folder, x in (("saved_model_half_plus_two_cpu", [[2.0]]),
                      ("saved_model_half_plus_two_tf2_cpu", [2.0])):
        session = runtime.load_saved_model(str(testdata / folder / "00000123"), ["serve"])
        try:
            y = session.run("serving_default", {"x": np.array(x, dtype=np.float32)})["y"]
            np.testing.assert_array_equal(y, np.array(x) * 0.5 + 2)
            assert {"serving_default", "regress_x_to_y", "classify_x_to_y"} <= \
                set(session.signatures)
        finally:
            session.close()


def test_testdata_ref_dtype_outputs_are_value_types(runtime: ModuleType, testdata: Path) -> None:
    session = runtime.load_saved_model(str(testdata / "saved_model_counter" / "00000123"),
                                       ["serve"])
    try:
        output = session.signatures["get_counter"].outputs["output"]
        assert output.dtype == DataType.DT_FLOAT
        assert session.signatures["get_counter"].proto.outputs["output"].dtype == 101  # _REF
        assert session.run("reset_counter", {})["output"] == 0.0
    finally:
        session.close()


def test_missing_export_fails_with_tensorflows_message(runtime: ModuleType,
                                                       tmp_path: Path) -> None:
    with _raises(Code.NOT_FOUND,
                 f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                 f"{tmp_path}. Check that the directory exists and that you have the right "
                 f"permissions for accessing it."):
        runtime.load_saved_model(str(tmp_path), ["serve"])


def test_unknown_tags_fail_with_tensorflows_message(runtime: ModuleType, models: Any) -> None:
    with _raises(Code.NOT_FOUND,
                 "Could not find meta graph def matching supplied tags: { gpu serve }. To inspect "
                 "available tag-sets in the SavedModel, please use the SavedModel CLI: "
                 "`saved_model_cli`"):
        runtime.load_saved_model(str(models.get("half_plus_two_tf1")), ["serve", "gpu"])


def test_broken_testdata_export_fails_to_load(runtime: ModuleType, testdata: Path) -> None:
    path = testdata / "bad_half_plus_two" / "00000123"
    with pytest.raises(ServingError) as error:
        runtime.load_saved_model(str(path), ["serve"])
    assert error.value.code == Code.NOT_FOUND
    assert str(path) in error.value.message


def test_accepts_path_objects(runtime: ModuleType, models: Any) -> None:
    session = runtime.load_saved_model(models.get("half_plus_two_tf1"), ["serve"])
    assert session.run("serving_default", X)["y"].shape == (3, 1)
    session.close()


# -- request checks (TF Serving's messages) -----------------------------------------------------


def test_unknown_signature(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'):
        sessions(runtime, "half_plus_two_tf1").run("nope", X)


def test_extra_input(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT,
                 "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
                 "Sent extra: {z}. Missing but required: {}."):
        sessions(runtime, "half_plus_two_tf1").run("serving_default", {**X, "z": X["x"]})


def test_missing_input(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT,
                 "input size does not match signature: 0!=1 len({}) != len({x}). "
                 "Sent extra: {}. Missing but required: {x}."):
        sessions(runtime, "half_plus_two_tf1").run("serving_default", {})


def test_unknown_input_alias(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT,
                 "input tensor alias not found in signature: z. "
                 "Inputs expected to be in the set {x}."):
        sessions(runtime, "half_plus_two_tf1").run("serving_default", {"z": X["x"]})


def test_wrong_dtype_is_tensorflows_error(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT, "Expects arg[0] to be float but double is provided"):
        sessions(runtime, "half_plus_two_tf1").run(
            "serving_default", {"x": np.ones((1, 1), dtype=np.float64)})


def test_string_for_a_number_is_a_dtype_error(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided"):
        sessions(runtime, "half_plus_two_tf1").run(
            "serving_default", {"x": np.array([[b"1"]], dtype=object)})


def test_unknown_output_alias(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT,
                 "output tensor alias not found in signature: z "
                 "Outputs expected to be in the set {y}."):
        sessions(runtime, "half_plus_two_tf1").run("serving_default", X, ["z"])


def test_duplicate_output_alias(runtime: ModuleType, sessions: Any) -> None:
    with _raises(Code.INVALID_ARGUMENT, "duplicate output tensor alias: y"):
        sessions(runtime, "half_plus_two_tf1").run("serving_default", X, ["y", "y"])


def test_output_filter_selects_in_requested_order(runtime: ModuleType, sessions: Any) -> None:
    session = sessions(runtime, "dtype_round_trip")
    x = np.arange(3, dtype=np.int32)
    assert list(session.run("int32", {"x": x}, ["identity", "concat"])) == ["identity", "concat"]
    assert list(session.run("int32", {"x": x}, ["concat"])) == ["concat"]
    assert list(session.run("int32", {"x": x}, [])) == ["concat", "identity"]  # empty: all


def test_shapes_are_left_to_the_graph_as_tf_serving_does(runtime: ModuleType,
                                                         sessions: Any) -> None:
    # TF Serving's REST example feeds [1.0, 2.0, 5.0] (shape [3]) to x of shape [-1, 1].
    session = sessions(runtime, "half_plus_two_tf1")
    y = session.run("serving_default", {"x": np.array([1.0, 2.0, 5.0], dtype=np.float32)})["y"]
    np.testing.assert_array_equal(y, [2.5, 3.0, 4.5])


def test_graph_errors_keep_tensorflows_code_and_message(runtime: ModuleType,
                                                        sessions: Any) -> None:
    # Concatenating scalars is an error only the graph knows about.
    with pytest.raises(ServingError) as error:
        sessions(runtime, "dtype_round_trip").run("int32", {"x": np.int32(1)})
    assert error.value.code == Code.INVALID_ARGUMENT
    assert error.value.message.startswith("ConcatOp : Can't concatenate scalars")


def test_graph_errors_that_echo_non_utf8_input_are_invalid_argument(runtime: ModuleType,
                                                                    models: Any) -> None:
    from tfsfast.testing import export_models

    # A tf.Example whose feature name claims more bytes than there are: ParseExample quotes
    # the bytes in its message, which TF's Python wrapper cannot even decode.
    example = b"\n\x0f\n\r\n\xfdx\x12\x08\x12\x06\n\x04\x00\x00\x00@"
    session = runtime.load_saved_model(
        str(models.get("examples", export_models.export_half_plus_two_tf1)), ["serve"])
    try:
        with pytest.raises(ServingError) as error:
            session.run("classify_x_to_y", {"inputs": np.array([example], dtype=object)})
    finally:
        session.close()
    assert error.value.code == Code.INVALID_ARGUMENT
    assert error.value.message.startswith(
        "Could not parse example input, value: '\n\x0f\n\r\n\ufffdx\x12\x08\x12\x06\n\x04")


def test_plain_python_values_take_the_tensor_dtype(runtime: ModuleType, sessions: Any) -> None:
    y = sessions(runtime, "half_plus_two_tf1").run("serving_default", {"x": [[2]]})["y"]
    np.testing.assert_array_equal(y, [[3.0]])


def test_byte_swapped_input_is_accepted(runtime: ModuleType, sessions: Any) -> None:
    x = np.array([[2.0]], dtype=">f4")
    y = sessions(runtime, "half_plus_two_tf1").run("serving_default", {"x": x})["y"]
    np.testing.assert_array_equal(y, [[3.0]])


# -- SignatureDef defaults ----------------------------------------------------------------------


def _export_with_default(export_dir: str) -> str:
    """y = a + b, where the SignatureDef gives b a default of 10."""
    import tensorflow as tf

    from tfsfast.testing.runtime_models import _save_tf1, _signature

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.placeholder(tf.float32, name="a")
        b = v1.placeholder(tf.float32, name="b")
        signature = _signature({"a": a, "b": b}, {"y": tf.add(a, b, name="y")})
        signature.defaults["b"].CopyFrom(tf.make_tensor_proto(10.0, tf.float32))
    return _save_tf1(export_dir, graph, {"serving_default": signature})


def test_signature_defaults_fill_missing_inputs(runtime: ModuleType, models: Any) -> None:
    session = runtime.load_saved_model(str(models.get("with_default", _export_with_default)),
                                       ["serve"])
    try:
        one = np.float32(1.0)
        assert session.run("serving_default", {"a": one})["y"] == 11.0
        assert session.run("serving_default", {"a": one, "b": np.float32(2.0)})["y"] == 3.0
        with _raises(Code.INVALID_ARGUMENT,
                     "Signature input alias: a(feed name: a:0) not found in request and no "
                     "default value provided."):
            session.run("serving_default", {"b": one})
    finally:
        session.close()


# -- close ---------------------------------------------------------------------------------------


def test_runs_after_close_are_cancelled(runtime: ModuleType, models: Any) -> None:
    session = runtime.load_saved_model(str(models.get("half_plus_two_tf1")), ["serve"])
    session.run("serving_default", X)
    session.close()
    with _raises(Code.CANCELLED, "Session has been closed."):
        session.run("serving_default", X)
    session.close()  # idempotent


def test_facade_prefers_the_compiled_module() -> None:
    from tfsfast import _extensions, runtime

    try:
        import tfsfast.runtime._session  # noqa: F401
    except ImportError:
        pytest.skip("the compiled runtime is not built")
    assert runtime.IMPLEMENTATION == ("python" if _extensions.NO_EXTENSIONS else "compiled")
