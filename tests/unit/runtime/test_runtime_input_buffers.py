"""What a run does with the caller's input arrays, small and large (both implementations).

The compiled runtime copies small numeric inputs into a staging tensor it reuses from run to run
and lends large ones (see ``_session.pyx``, "Buffers"); none of that may show: every run gets its
own answer, outputs never share memory with a later run's inputs, a fed value the graph keeps
is never overwritten, and no reference to the caller's array outlives the run.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tfsfast.runtime.arrays import aligned_empty

# Element counts of float32 inputs on either side of the compiled runtime's staging limit
# (4 KiB): small ones are staged, large ones lent.
SMALL = 8
LARGE = 4096


def export_fifo(export_dir: str) -> str:
    """A FIFO queue of float32[2] values: ``enqueue`` (input ``x``, output ``size`` after it)
    and ``dequeue`` (output ``y``). A queued value is the fed tensor itself, kept by the graph
    past the run that fed it."""
    import tensorflow as tf

    from tfsfast.testing import runtime_models

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        queue = v1.FIFOQueue(8, [tf.float32], shapes=[[2]], name="fifo")
        x = v1.placeholder(tf.float32, shape=[2], name="x")
        with tf.control_dependencies([queue.enqueue([x])]):
            size = tf.identity(queue.size(), name="size")
        y = tf.identity(queue.dequeue(), name="y")
        signatures = {
            "enqueue": runtime_models._signature({"x": x}, {"size": size}),
            "dequeue": runtime_models._signature({}, {"y": y}),
        }
    return runtime_models._save_tf1(export_dir, graph, signatures)


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_each_run_gets_its_own_answer_and_earlier_outputs_stay(runtime: ModuleType,
                                                               sessions: Any,
                                                               count: int) -> None:
    session = sessions(runtime, "dtype_round_trip")
    # The same shape again and again (a staging tensor is reused), then a new shape, then back.
    shapes = [(count,)] * 4 + [(count // 2, 2)] + [(count,)] * 2
    runs = []
    for k, shape in enumerate(shapes):
        x = aligned_empty(shape, np.float32)
        x[...] = np.arange(x.size, dtype=np.float32).reshape(shape) + 1000 * k
        runs.append((x.copy(), session.run("float32", {"x": x})))
    for x, out in runs:  # identity hands back the fed value: it must not follow later runs
        np.testing.assert_array_equal(out["identity"], x)
        np.testing.assert_array_equal(out["concat"], np.concatenate([x, x]))


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_outputs_do_not_change_when_the_input_array_does(runtime: ModuleType, sessions: Any,
                                                         count: int) -> None:
    x = aligned_empty((count,), np.float32)
    x[:] = 1.0
    out = sessions(runtime, "dtype_round_trip").run("float32", {"x": x})
    x[:] = 2.0
    np.testing.assert_array_equal(out["identity"], np.ones(count, np.float32))
    np.testing.assert_array_equal(out["concat"], np.ones(2 * count, np.float32))


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_no_reference_to_the_input_outlives_the_run(runtime: ModuleType, sessions: Any,
                                                    count: int) -> None:
    session = sessions(runtime, "dtype_round_trip")
    x = aligned_empty((count,), np.float32)
    x[:] = 3.0
    before = sys.getrefcount(x)
    out = session.run("float32", {"x": x})
    assert sys.getrefcount(x) == before
    del out
    assert sys.getrefcount(x) == before


def test_a_fed_value_the_graph_keeps_is_not_overwritten(runtime: ModuleType,
                                                        models: Any) -> None:
    session = runtime.load_saved_model(str(models.get("fifo", export_fifo)), ["serve"])
    try:
        values = [np.array([k, -k], dtype=np.float32) for k in range(1, 6)]
        for n, x in enumerate(values, start=1):  # one shape: each run could reuse a buffer
            assert session.run("enqueue", {"x": x})["size"] == n
        for x in values:
            np.testing.assert_array_equal(session.run("dequeue", {})["y"], x)
    finally:
        session.close()


def test_selected_outputs_in_any_sequence_type(runtime: ModuleType, sessions: Any) -> None:
    session = sessions(runtime, "dtype_round_trip")
    x = np.arange(SMALL, dtype=np.float32)
    for selection in (["concat", "identity"], ("concat", "identity"),
                      np.array(["concat", "identity"])):
        out = session.run("float32", {"x": x}, selection)
        assert list(out) == ["concat", "identity"]
        np.testing.assert_array_equal(out["identity"], x)
