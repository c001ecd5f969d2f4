"""RunCost: the estimate that decides where a signature's runs go (compiled and twin)."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.run_cost import (
    INLINE_RUN_MAX_SECONDS,
    PROBE_INTERVAL,
    PROBE_SHARE,
    RISE,
    SPIKE_FACTOR,
    STAY_FACTOR,
    RunCostPolicy,
)

# The limit of most tests below: 100 µs.
POLICY = RunCostPolicy(100e-6)


@pytest.fixture(params=implementations("tfsfast.util._run_cost", "tfsfast.util._run_cost_py"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return import_impl(request.param)


def test_the_first_run_is_taken_as_it_is(impl: ModuleType) -> None:
    for limit, below in ((1.0, True), (0.004, True), (0.003, False)):
        cost = impl.RunCost(RunCostPolicy(limit))
        assert cost.seconds is None and not cost.below()
        cost.add(0.003)
        assert cost.seconds == 0.003 and cost.below() is below


def test_the_policys_limit_is_read_once(impl: ModuleType) -> None:
    assert RunCostPolicy().inline_run_max_seconds == INLINE_RUN_MAX_SECONDS == 100e-6
    cost = impl.RunCost(RunCostPolicy(1e-3), 5e-4)
    assert cost.allows(now=0.0) and cost.below()
    assert not impl.RunCost(RunCostPolicy(1e-4), 5e-4).below()
    assert impl.RunCost(RunCostPolicy(float("inf")), 1e6).allows(now=0.0)
    assert not impl.RunCost(RunCostPolicy(0.0), 0.0).allows(now=0.0)


@pytest.mark.parametrize("limit", [-1e-6, float("nan"), "1e-4", None])
def test_a_policy_limit_is_a_number_of_at_least_zero(limit: object) -> None:
    with pytest.raises(ValueError) as info:
        RunCostPolicy(limit)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"RunCostPolicy.inline_run_max_seconds must be a number >= 0, got {limit!r}")


def test_a_faster_run_is_the_estimate_at_once(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 3e-3)  # e.g. the first run, or runs that waited for the GIL
    cost.add(5e-6)
    assert cost.seconds == 5e-6


def test_a_slower_run_moves_the_estimate_by_its_rise(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 10e-6)
    cost.add(20e-6)
    assert cost.seconds == pytest.approx(10e-6 + RISE * 10e-6)


def test_a_spike_alone_is_ignored(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 5e-6)
    cost.add(5e-3)  # a preempted run
    assert cost.seconds == 5e-6
    cost.add(5e-6)
    cost.add(5e-3)  # another, but not in a row
    assert cost.seconds == 5e-6
    assert cost.below()


def test_two_spikes_in_a_row_are_believed(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 5e-6)
    cost.add(5e-3)
    cost.add(5e-3)  # the model really got slower (or the requests larger)
    assert cost.seconds == pytest.approx(5e-6 + RISE * (5e-3 - 5e-6))
    assert not cost.below()


def test_a_rise_within_the_spike_factor_counts_at_once(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 10e-6)
    cost.add(SPIKE_FACTOR * 10e-6)
    assert cost.seconds > 10e-6


def test_a_cheap_estimate_allows_every_run(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 5e-6)
    assert all(cost.allows(now=t) for t in (0.0, 0.1, 0.2))
    assert not impl.RunCost(POLICY).allows(now=0.0)  # never measured


def test_over_the_limit_a_probe_is_let_through_now_and_then(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 2e-4)  # e.g. runs on a thread that all waited for the GIL
    assert not cost.allows(now=10.0)  # the first probe comes later
    assert not cost.allows(now=10.0 + PROBE_INTERVAL / 2)
    assert cost.allows(now=10.0 + PROBE_INTERVAL)  # a probe
    assert not cost.allows(now=10.0 + PROBE_INTERVAL * 1.5)
    cost.add(5e-6)  # the probe ran cheap: believed at once
    assert cost.allows(now=10.0 + PROBE_INTERVAL * 1.6)


def test_probes_of_a_slow_signature_take_a_small_share_of_the_time(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 0.1)  # 100 ms runs: probes take at most PROBE_SHARE of the time
    cost.allows(now=0.0)
    assert not cost.allows(now=0.1 / PROBE_SHARE / 2)
    assert cost.allows(now=0.1 / PROBE_SHARE)


def test_allowed_runs_stay_allowed_until_well_past_the_limit(impl: ModuleType) -> None:
    cost = impl.RunCost(POLICY, 50e-6)
    assert cost.allows(now=0.0)
    cost.seconds = 150e-6  # a burst of preemptions lifted the estimate a little
    assert cost.allows(now=0.1)
    cost.seconds = STAY_FACTOR * 100e-6  # well past: sent away, and probed from now on
    assert not cost.allows(now=0.2)
    cost.seconds = 150e-6
    # Once away, only under the limit (or a probe, not due yet) brings it back.
    assert not cost.allows(now=0.2 + PROBE_INTERVAL / 2)
    cost.seconds = 90e-6
    assert cost.allows(now=0.2 + PROBE_INTERVAL / 2)


def test_the_compiled_estimate_is_the_twins() -> None:
    # The same runs and questions, in a random order, get the same answers from both.
    from tfsfast import _extensions
    from tfsfast.util import _run_cost_py

    if _extensions.NO_EXTENSIONS:
        pytest.skip("TFSFAST_NO_EXTENSIONS is set")
    compiled = import_impl("tfsfast.util._run_cost")
    rng = random.Random(6)
    for _ in range(50):
        first = rng.choice([None, 5e-6, 2e-4])
        policy = RunCostPolicy(rng.choice([1e-5, 1e-4]))
        a, b = compiled.RunCost(policy, first), _run_cost_py.RunCost(policy, first)
        now = 0.0
        for _ in range(200):
            now += rng.choice([0.0, 1e-3, PROBE_INTERVAL / 3, PROBE_INTERVAL])
            if rng.random() < 0.5:
                elapsed = rng.choice([1e-6, 5e-6, 5e-5, 2e-4, 5e-3])
                a.add(elapsed)
                b.add(elapsed)
            else:
                assert a.allows(now) == b.allows(now)
            assert a.seconds == b.seconds
            assert a.below() == b.below()
        assert repr(a) == repr(b)
