"""MultiInference fetches every task's outputs in one run, on both runtime implementations,
whether the tasks' signatures share their input tensor (TF1 exports) or not (TF2 exports)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorflow_serving.apis import input_pb2

from tfsfast.core.servable_id import ServableId
from tfsfast.servables.multi_inference import InferenceTask, run_multi_inference
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.testing.export_models import export_half_plus_two_tf2_classify_regress
from tfsfast.testing.test_util import implementations, import_impl

RUNTIMES = implementations("tfsfast.runtime._session", "tfsfast.runtime._session_py")


class CountingSession:
    """Forwards to a runtime session, counting runs by kind."""

    def __init__(self, session: object) -> None:
        self._session = session
        self.calls: list[str] = []
        self.signatures = session.signatures
        self.meta_graph_def = session.meta_graph_def

    def run(self, *args: object, **kwargs: object) -> object:
        self.calls.append("run")
        return self._session.run(*args, **kwargs)

    def run_signature(self, *args: object, **kwargs: object) -> object:
        self.calls.append("run_signature")
        return self._session.run_signature(*args, **kwargs)

    def close(self) -> None:
        self._session.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_run_for_all_tasks(runtime: str, exported_models: dict[str, Path]) -> None:
    session = import_impl(runtime).load_saved_model(str(exported_models["tf1"]), ["serve"])
    counting = CountingSession(session)
    bundle = SavedModelBundle(ServableId("m", 1), str(exported_models["tf1"]), counting)
    request_input = input_pb2.Input()
    for x in (2.0, 4.0):
        example = request_input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    tasks = [InferenceTask("m", "classify_x_to_y", "tensorflow/serving/classify"),
             InferenceTask("m", "regress_x_to_y", "tensorflow/serving/regress")]
    response = run_multi_inference(bundle, tasks, request_input, servable_version=1)
    assert counting.calls == ["run_signature"]
    classify, regress = response.results
    assert [c.classes[0].score for c in classify.classification_result.classifications] == [
        3.0, 4.0]
    assert [r.value for r in regress.regression_result.regressions] == [3.0, 4.0]
    assert (regress.model_spec.signature_name, regress.model_spec.version.value) == (
        "regress_x_to_y", 1)
    # The merged signature is cached: a second request resolves nothing new and still runs once.
    run_multi_inference(bundle, tasks, request_input)
    assert counting.calls == ["run_signature", "run_signature"]
    session.close()


@pytest.fixture(scope="module")
def tf2_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(export_half_plus_two_tf2_classify_regress(
        str(tmp_path_factory.mktemp("tf2") / "1")))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_run_feeds_each_signature_its_input(runtime: str, tf2_export: Path) -> None:
    session = import_impl(runtime).load_saved_model(str(tf2_export), ["serve"])
    counting = CountingSession(session)
    bundle = SavedModelBundle(ServableId("m", 1), str(tf2_export), counting)
    inputs = {bundle.signatures[name].inputs["inputs"].tensor_name
              for name in ("classify_x_to_y", "regress_x_to_y")}
    assert len(inputs) == 2  # what used to be refused: "Input tensor must be the same ..."
    request_input = input_pb2.Input()
    for x in (2.0, 4.0):
        example = request_input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    tasks = [InferenceTask("m", "regress_x_to_y", "tensorflow/serving/regress"),
             InferenceTask("m", "classify_x_to_y", "tensorflow/serving/classify")]
    response = run_multi_inference(bundle, tasks, request_input, servable_version=1)
    regress, classify = response.results
    assert counting.calls == ["run_signature"]
    assert [r.value for r in regress.regression_result.regressions] == [3.0, 4.0]
    assert [c.classes[0].score for c in classify.classification_result.classifications] == [
        3.0, 4.0]
    session.close()
