"""PredictFastPath (compiled and twin) against predict_answer: the same bytes, or a fall back.

Every answer the fast path gives is compared byte for byte with what ``predict_answer`` returns
for the same request; every request it declines must be one ``predict_answer`` then answers (or
refuses) itself. Runs are forced inline (a ``RunCostPolicy`` without a limit) once a signature
has a measured cost, so which path answers does not depend on the machine's speed.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2

from tfsfast.codecs import tensor_proto
from tfsfast.server import model_config as mc
from tfsfast.server.grpc import predict_fast_path
from tfsfast.server.grpc.prediction_service_impl import (
    INLINE_MAX_REQUEST_BYTES,
    PredictionServiceImpl,
    PredictionServiceOptions,
)
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.call_context import CallContext, outcome
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy
from tfsfast.util.status import Code

IMPLS = implementations("tfsfast.server.grpc._predict_fast_path",
                        "tfsfast.server.grpc._predict_fast_path_py")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``PredictFastPath`` is under test."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    """Model "m" at version 3, labelled "stable"; "gone" names a version that is not there."""
    base = tmp_path_factory.mktemp("grpc_fast_path") / "m"
    shutil.copytree(exported_models["tf1"], base / "3")
    config = mc.single_model_config("m", str(base))
    labels = config.model_config_list.config[0].version_labels
    labels["stable"], labels["gone"] = 3, 9
    serving = ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0,
        allow_version_labels_for_unavailable_models=True))
    yield serving
    serving.stop()


# Every signature with a measured cost runs inline, however slow this machine is.
INLINE = RunCostPolicy(float("inf"))


def request(name: str = "m", x: list[float] | None = None, **spec: Any) -> Any:
    r = predict_pb2.PredictRequest()
    r.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            r.model_spec.version.value = value
        else:
            setattr(r.model_spec, key, value)
    r.inputs["x"].CopyFrom(tensor_proto.from_ndarray(
        np.array([[v] for v in (x or [1.0, 2.0, 5.0])], np.float32)))
    return r


def regress_request() -> Any:
    """The regress signature's input through Predict: serialized tf.Examples."""
    from tensorflow.core.example import example_pb2

    r = predict_pb2.PredictRequest()
    r.model_spec.name = "m"
    r.model_spec.signature_name = "regress_x_to_y"
    examples = []
    for x in (1.0, 4.0):
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(x)
        examples.append(example.SerializeToString())
    r.inputs["inputs"].CopyFrom(tensor_proto.from_ndarray(np.array(examples, object)))
    return r


def service(core: ServerCore, impl: Any, **options: Any) -> tuple[PredictionServiceImpl, Any]:
    """A service, warmed (its signatures measured), and a fast path of ``impl`` in front of it
    sharing its run costs."""
    s = PredictionServiceImpl(core, PredictionServiceOptions(run_cost_policy=INLINE, **options))
    for message in (request(), regress_request()):
        s.predict(message.SerializeToString(), CallContext())
    fast = impl.PredictFastPath(
        core.manager.handle_table.find, core.get_model_version_for_label, s._run_costs,
        s.predict_answer, s._options.enforce_signature_method_name,
        s._options.serialize_as_tensor_content, INLINE_MAX_REQUEST_BYTES, s._tensors)
    return s, fast


def both(core: ServerCore, impl: Any, message: Any, context: Any = None,
         **options: Any) -> tuple[Any, Any]:
    s, fast = service(core, impl, **options)
    data = message if type(message) is bytes else message.SerializeToString()
    context = context or CallContext()
    return outcome(fast.answer, data, context), outcome(s.predict_answer, data, context)


def with_output_filter(*aliases: str) -> Any:
    r = request()
    r.output_filter.extend(aliases)
    return r


def with_unknown_fields() -> bytes:
    # Field 15 (varint) at the top level and in the model spec, which parsers skip.
    spec = request().model_spec.SerializeToString() + b"\x78\x01"
    r = request()
    r.ClearField("model_spec")
    return r.SerializeToString() + b"\x78\x05" + b"\x0a" + bytes([len(spec)]) + spec


# --- answered by the fast path, byte for byte predict_answer's answer -------------------------

@pytest.mark.parametrize("message", [
    request(),
    request(version=3),
    request(version_label="stable"),
    request(signature_name="serving_default"),
    regress_request(),
    request(x=[0.1, 1e-7, 3.4028234e38]),
    with_output_filter("y"),
    with_unknown_fields(),
], ids=["latest", "version", "label", "signature", "other_signature", "values", "output_filter",
        "unknown_fields"])
def test_predict_answers_match_predict_answer(impl: Any, core: ServerCore,
                                              message: Any) -> None:
    fast, general = both(core, impl, message)
    assert type(fast) is bytes
    assert fast == general
    response = predict_pb2.PredictResponse.FromString(fast)
    assert response.model_spec.name == "m" and response.model_spec.version.value == 3


@pytest.mark.parametrize("remaining", [5.0, 1e18], ids=["deadline", "grpcio-no-deadline"])
def test_answers_match_with_tensor_content_and_a_deadline(impl: Any, core: ServerCore,
                                                          remaining: float) -> None:
    fast, general = both(core, impl, request(), CallContext(remaining),
                         serialize_as_tensor_content=True)
    assert type(fast) is bytes and fast == general
    y = predict_pb2.PredictResponse.FromString(fast).outputs["y"]
    assert y.tensor_content and not y.float_val


def test_calling_the_fast_path_answers_what_predict_answer_does(impl: Any,
                                                                core: ServerCore) -> None:
    s, fast = service(core, impl)
    for message in (request(), request("nope"), request(version_label="none")):
        data = message.SerializeToString()
        assert outcome(fast, data, CallContext()) == outcome(s.predict_answer, data, CallContext())


def test_a_failed_run_raises_what_predict_answer_raises(impl: Any, core: ServerCore) -> None:
    r = request()
    r.inputs["x"].CopyFrom(tensor_proto.from_ndarray(np.array([[1]], np.int32)))
    fast, general = both(core, impl, r)
    assert fast == general and fast[0] == Code.INVALID_ARGUMENT


# --- declined: predict_answer answers or refuses ----------------------------------------------

def _two_specs() -> bytes:
    spec = request(version=3).model_spec.SerializeToString()
    return request().SerializeToString() + b"\x0a" + bytes([len(spec)]) + spec


def _two_parts() -> bytes:
    r = request()
    tensor = r.inputs["x"].SerializeToString()
    r.ClearField("inputs")
    entry = b"\x0a\x01x" + b"\x12" + bytes([len(tensor)]) + tensor
    return r.SerializeToString() + b"\x12" + bytes([len(entry) + 2]) + entry + b"\x12\x00"


@pytest.mark.parametrize("message", [
    b"\xff",
    b"",
    request(""),
    request("nope"),
    request(version=7),
    request(version_label="none"),
    request(version_label="gone"),
    request(signature_name="nope"),
    with_output_filter("nope"),
    with_output_filter("y", "y"),
], ids=["garbage", "empty", "no_name", "unknown_model", "unknown_version", "unknown_label",
        "label_unavailable", "unknown_signature", "unknown_output", "repeated_output"])
def test_refused_requests_go_to_predict_answer(impl: Any, core: ServerCore,
                                               message: Any) -> None:
    fast, general = both(core, impl, message)
    assert fast is None
    assert type(general) is tuple


def _version_then_label() -> bytes:
    r = request(version=7)
    label = b"\x22\x06stable"  # model_spec.version_label after the version: the label wins
    spec = r.model_spec.SerializeToString() + label
    r.ClearField("model_spec")
    return r.SerializeToString() + b"\x0a" + bytes([len(spec)]) + spec


@pytest.mark.parametrize("message", [_two_specs(), _two_parts(), _version_then_label()],
                         ids=["two_specs", "two_parts", "version_then_label"])
def test_merged_forms_are_answered_as_predict_answer_does(impl: Any, core: ServerCore,
                                                          message: bytes) -> None:
    # Both read them with the codec, as predict_answer does (or leave them to it).
    fast, general = both(core, impl, message)
    assert fast is None or fast == general


def test_input_mismatches_and_bad_tensors_go_to_predict_answer(impl: Any,
                                                               core: ServerCore) -> None:
    extra = request()
    extra.inputs["z"].CopyFrom(extra.inputs["x"])
    renamed = request()
    renamed.inputs["w"].CopyFrom(renamed.inputs.pop("x"))
    broken = request()
    broken.inputs["x"].tensor_content = b"\x00" * 3
    for message in (extra, renamed, broken):
        fast, general = both(core, impl, message)
        assert fast is None and general[0] == Code.INVALID_ARGUMENT


def test_expired_deadlines_and_large_requests_go_to_predict_answer(impl: Any,
                                                                   core: ServerCore) -> None:
    fast, general = both(core, impl, request(), CallContext(-1.0))
    assert fast is None and general == (Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
    large = request(x=[1.0] * (INLINE_MAX_REQUEST_BYTES // 4 + 1))
    large.inputs["x"].CopyFrom(tensor_proto.from_ndarray(
        np.ones((INLINE_MAX_REQUEST_BYTES // 4 + 1, 1), np.float32), tensor_content=True))
    fast, general = both(core, impl, large)
    assert fast is None and type(general) is bytes


def test_answers_match_with_method_names_enforced(impl: Any, core: ServerCore) -> None:
    for message in (request(), regress_request()):
        fast, general = both(core, impl, message, enforce_signature_method_name=True)
        assert type(fast) is bytes and fast == general


def test_unmeasured_slow_and_batched_runs_go_to_predict_answer(
        impl: Any, core: ServerCore, monkeypatch: pytest.MonkeyPatch) -> None:
    def fast_path(policy: RunCostPolicy) -> Any:
        s = PredictionServiceImpl(core, PredictionServiceOptions(run_cost_policy=policy))
        return impl.PredictFastPath(core.manager.handle_table.find,
                                    core.get_model_version_for_label, s._run_costs,
                                    s.predict_answer)

    fast = fast_path(INLINE)
    data = request().SerializeToString()
    assert fast.answer(data, CallContext()) is None  # never measured: the pool measures it
    assert not callable(outcome(fast, data, CallContext()))
    assert type(fast.answer(data, CallContext())) is bytes
    slow = fast_path(RunCostPolicy(0.0))  # no run is cheap enough for this thread
    assert not callable(outcome(slow, data, CallContext()))  # measured, in the pool
    assert slow.answer(data, CallContext()) is None
    assert callable(slow(data, CallContext()))  # predict_answer's continuation for the pool
    with core.get_servable_handle("m") as handle:
        monkeypatch.setattr(handle.servable, "batching_session", object())
        assert fast.answer(data, CallContext()) is None


def test_the_service_uses_the_loaded_implementation(core: ServerCore) -> None:
    s = PredictionServiceImpl(core)
    assert type(s._predict_fast) is predict_fast_path.PredictFastPath
    assert s.fast_methods()["/tensorflow.serving.PredictionService/Predict"][0] is (
        s._predict_fast)


def test_fast_runs_are_measured_into_the_shared_run_cost(impl: Any, core: ServerCore) -> None:
    s, fast = service(core, impl)
    with core.get_servable_handle("m") as handle:
        cost = s._run_costs.cost(handle.id, "serving_default")
    cost.seconds = 1e6  # a faster run becomes the estimate at once
    assert type(fast.answer(request().SerializeToString(), CallContext())) is bytes
    assert 0 < cost.seconds < 1e6
