"""InferFastPath (compiled and twin) against model_infer_answer: the same bytes, or a fall back.

Every answer the fast path gives is compared byte for byte with what ``model_infer_answer``
returns for the same request; every request it declines must be one ``model_infer_answer`` then
answers (or refuses) itself. Runs are forced inline (a ``RunCostPolicy`` without a limit) once a
signature has a measured cost, so which path answers does not depend on the machine's speed.
"""

from __future__ import annotations

import importlib
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfsfast.server import model_config as mc
from tfsfast.server.grpc.prediction_service_impl import INLINE_MAX_REQUEST_BYTES
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2.grpc_inference_service import GrpcInferenceServiceImpl
from tfsfast.server.v2.grpc_protocol import message_class
from tfsfast.testing import export_models
from tfsfast.testing.call_context import CallContext, outcome
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy
from tfsfast.util.status import Code

IMPLS = implementations("tfsfast.server.v2._infer_fast_path",
                        "tfsfast.server.v2._infer_fast_path_py")
# Every signature with a measured cost runs inline, however slow this machine is.
INLINE = RunCostPolicy(float("inf"))


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``InferFastPath`` is under test."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    """half_plus_two ("hp2", version 3) and the multi-input, multi-output model ("multi")."""
    root = tmp_path_factory.mktemp("infer_fast_path")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "3")
    export_models.export_multi_io(str(root / "multi" / "1"))
    config = mc.parse_model_server_config("model_config_list {" + "".join(
        f' config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}'
        for name in ("hp2", "multi")) + " }")
    serving = ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0))
    yield serving
    serving.stop()


def hp2(x: list[float] | None = None, **fields: Any) -> Any:
    r = message_class("ModelInferRequest")(model_name="hp2", **fields)
    values = np.array(x if x is not None else [1.0, 2.0, 5.0], "<f4")
    r.inputs.add(name="x", datatype="FP32", shape=[len(values), 1])
    r.raw_input_contents.append(values.tobytes())
    return r


def multi(order: tuple[str, ...] = ("a", "b", "s"), outputs: tuple[str, ...] = ()) -> Any:
    r = message_class("ModelInferRequest")(model_name="multi", id="req-7")
    data = {"a": ("FP32", [2, 2], np.array([1, 2, 3, 4], "<f4").tobytes()),
            "b": ("INT64", [2], np.array([-1, 5], "<i8").tobytes()),
            "s": ("BYTES", [2], b"\x02\x00\x00\x00ab\x01\x00\x00\x00\xff")}
    for name in order:
        datatype, shape, raw = data[name]
        r.inputs.add(name=name, datatype=datatype, shape=shape)
        r.raw_input_contents.append(raw)
    for name in outputs:
        r.outputs.add(name=name)
    return r


def service(core: ServerCore, impl: Any) -> tuple[GrpcInferenceServiceImpl, Any]:
    """A service, warmed (its signatures measured), and a fast path of ``impl`` in front of it
    sharing its run costs."""
    s = GrpcInferenceServiceImpl(core, ServerHealth(core), 1 << 26, run_cost_policy=INLINE)
    for message in (hp2(), multi()):
        s.model_infer(message.SerializeToString(), CallContext())
    fast = impl.InferFastPath(core.manager.handle_table.find, s._run_costs,
                              s.model_infer_answer, False, INLINE_MAX_REQUEST_BYTES, s._limits)
    return s, fast


def both(core: ServerCore, impl: Any, message: Any,
         context: Any = None) -> tuple[Any, Any]:
    s, fast = service(core, impl)
    data = message if type(message) is bytes else message.SerializeToString()
    context = context or CallContext()
    return outcome(fast.answer, data, context), outcome(s.model_infer_answer, data, context)


def _with(message: Any, change: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    change(copy)
    return copy


@pytest.mark.parametrize("message", [
    hp2(),
    hp2(id="abc"),
    hp2(model_version="3"),
    hp2([]),
    multi(),
    multi(order=("s", "b", "a")),
    multi(outputs=("text", "total")),
    multi(outputs=("positive",)),
    _with(hp2(), lambda r: r.parameters["triton_enable_empty_final_response"].CopyFrom(
        type(r.parameters["x"])(bool_param=True))),
    _with(hp2(), lambda r: r.parameters["priority"].CopyFrom(
        type(r.parameters["x"])(string_param="é"))),
], ids=["hp2", "id", "version", "empty", "multi", "input-order", "outputs", "bool-output",
        "ignored-parameter", "ignored-string-parameter"])
def test_taken_requests_answer_what_model_infer_answers(core: ServerCore, impl: Any,
                                                        message: Any) -> None:
    fast, slow = both(core, impl, message)
    assert type(slow) is bytes
    assert fast == slow


@pytest.mark.parametrize("remaining", [30.0, 1e18], ids=["deadline", "grpcio-no-deadline"])
def test_taken_with_a_deadline(core: ServerCore, impl: Any, remaining: float) -> None:
    fast, slow = both(core, impl, hp2(), CallContext(remaining))
    assert fast is not None and fast == slow


def _typed(r: Any) -> None:
    r.ClearField("raw_input_contents")
    r.inputs[0].contents.fp32_contents.extend([1.0, 2.0, 5.0])


def _unknown_fields(r: Any) -> bytes:
    return r.SerializeToString() + b"\xa0\x06\x01"  # field 100, varint 1


@pytest.mark.parametrize("message", [
    _with(hp2(), _typed),
    _with(hp2(), lambda r: r.parameters["signature_name"].string_param.__class__),
    _with(hp2(), lambda r: r.parameters["signature_name"].CopyFrom(
        type(r.parameters["x"])(string_param="serving_default"))),
    _with(hp2(), lambda r: r.inputs[0].parameters["binary_data_size"].CopyFrom(
        type(r.inputs[0].parameters["x"])(int64_param=12))),
    _with(hp2(), lambda r: r.outputs.add(name="y").parameters["binary_data"].CopyFrom(
        type(r.outputs[0].parameters["x"])(bool_param=True))),
    _with(hp2(), lambda r: setattr(r, "model_name", "nope")),
    _with(hp2(), lambda r: setattr(r, "model_name", "")),
    _with(hp2(), lambda r: setattr(r, "model_version", "v3")),
    _with(hp2(), lambda r: setattr(r, "model_version", "4")),
    _with(hp2(), lambda r: setattr(r.inputs[0], "datatype", "FP64")),
    _with(hp2(), lambda r: setattr(r.inputs[0], "name", "z")),
    _with(hp2(), lambda r: r.inputs[0].shape.__setitem__(0, -3)),
    _with(hp2(), lambda r: r.inputs[0].shape.__setitem__(0, 4)),
    _with(hp2(), lambda r: r.inputs[0].shape.extend([1] * 40)),
    _with(hp2(), lambda r: r.inputs[0].shape.__setitem__(0, 1 << 40)),
    _with(hp2(), lambda r: r.outputs.add(name="q")),
    _with(hp2(), lambda r: [r.outputs.add(name="y"), r.outputs.add(name="y")]),
    _with(hp2(), lambda r: r.raw_input_contents.append(b"")),
    _with(multi(), lambda r: r.inputs.pop()),
    _with(multi(), lambda r: setattr(r.inputs[2], "name", "a")),
    _unknown_fields(hp2()),
    _with(hp2(), lambda r: r.parameters["classification"].CopyFrom(
        type(r.parameters["x"])(int64_param=2))),
    # A string parameter that is not UTF-8 (protobuf refuses the request).
    hp2().SerializeToString() + b"\x22\x0b\x0a\x01k\x12\x06\x1a\x04\xff\xfe\xfd\xfc",
    # A parameter value whose field has the wrong wire type.
    hp2().SerializeToString() + b"\x22\x07\x0a\x01k\x12\x02\x0d\x00",
    b"\x0a\x03hp",  # truncated
    b"\x0a\x02\xff\xfe",  # a model name that is not UTF-8
    b"\x0b",  # a group
], ids=["typed-contents", "empty-parameter", "signature-parameter", "input-parameter",
        "output-parameter", "unknown-model", "no-model", "bad-version", "missing-version",
        "datatype", "unknown-input", "negative-dim", "size-mismatch", "rank", "huge-dim",
        "unknown-output", "output-twice", "raw-count", "missing-input", "input-twice",
        "unknown-fields", "classification", "parameter-not-utf8", "parameter-wire-type",
        "truncated", "not-utf8", "group"])
def test_other_requests_are_model_infer_answers(core: ServerCore, impl: Any,
                                                message: Any) -> None:
    """Declined (None), and model_infer_answer answers; or taken with its very answer (the
    unknown fields, which protobuf skips)."""
    fast, slow = both(core, impl, message)
    assert fast is None or fast == slow
    if type(slow) is not bytes:
        assert fast is None


def test_declines_a_passed_deadline(core: ServerCore, impl: Any) -> None:
    fast, slow = both(core, impl, hp2(), CallContext(-1.0))
    assert fast is None
    assert slow == (Code.DEADLINE_EXCEEDED, "Deadline Exceeded")


def test_declines_an_unmeasured_signature(core: ServerCore, impl: Any) -> None:
    """The first run of a signature goes to the pool: its cost is not known yet."""
    s = GrpcInferenceServiceImpl(core, ServerHealth(core), 1 << 26, run_cost_policy=INLINE)
    fast = impl.InferFastPath(core.manager.handle_table.find, s._run_costs,
                              s.model_infer_answer)
    data = hp2().SerializeToString()
    assert fast.answer(data, CallContext()) is None
    first = fast(data, CallContext())  # the fallback's continuation
    assert callable(first)
    response = first()  # measures the signature
    assert fast.answer(data, CallContext()) == response


def test_random_corruptions_are_declined_or_answered_alike(core: ServerCore, impl: Any) -> None:
    s, fast = service(core, impl)
    rng = random.Random(17)
    base = bytearray(multi(outputs=("total", "s_bytes")).SerializeToString())
    taken = 0
    for _ in range(600):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        fast_answer = outcome(fast.answer, bytes(data), CallContext())
        slow = outcome(s.model_infer_answer, bytes(data), CallContext())
        if fast_answer is not None:
            taken += 1
            assert fast_answer == slow, bytes(data)
    assert taken > 0  # some corruptions (in the data, say) still make a request it takes
