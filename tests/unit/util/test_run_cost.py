"""RunCost: the estimate that decides where a signature's runs go (compiled and twin)."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.run_cost import (
    PROBE_INTERVAL,
    PROBE_SHARE,
    RISE,
    SPIKE_FACTOR,
    STAY_FACTOR,
)


@pytest.fixture(params=implementations("tfsfast.util._run_cost", "tfsfast.util._run_cost_py"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return import_impl(request.param)


def test_the_first_run_is_taken_as_it_is(impl: ModuleType) -> None:
    cost = impl.RunCost()
    assert cost.seconds is None and not cost.below(1.0)
    cost.add(0.003)
    assert cost.seconds == 0.003 and cost.below(0.004) and not cost.below(0.003)


def test_a_faster_run_is_the_estimate_at_once(impl: ModuleType) -> None:
    cost = impl.RunCost(3e-3)  # e.g. the first run, or runs that waited for the GIL
    cost.add(5e-6)
    assert cost.seconds == 5e-6


def test_a_slower_run_moves_the_estimate_by_its_rise(impl: ModuleType) -> None:
    cost = impl.RunCost(10e-6)
    cost.add(20e-6)
    assert cost.seconds == pytest.approx(10e-6 + RISE * 10e-6)


def test_a_spike_alone_is_ignored(impl: ModuleType) -> None:
    cost = impl.RunCost(5e-6)
    cost.add(5e-3)  # a preempted run
    assert cost.seconds == 5e-6
    cost.add(5e-6)
    cost.add(5e-3)  # another, but not in a row
    assert cost.seconds == 5e-6
    assert cost.below(100e-6)


def test_two_spikes_in_a_row_are_believed(impl: ModuleType) -> None:
    cost = impl.RunCost(5e-6)
    cost.add(5e-3)
    cost.add(5e-3)  # the model really got slower (or the requests larger)
    assert cost.seconds == pytest.approx(5e-6 + RISE * (5e-3 - 5e-6))
    assert not cost.below(100e-6)


def test_a_rise_within_the_spike_factor_counts_at_once(impl: ModuleType) -> None:
    cost = impl.RunCost(10e-6)
    cost.add(SPIKE_FACTOR * 10e-6)
    assert cost.seconds > 10e-6


def test_a_cheap_estimate_allows_every_run(impl: ModuleType) -> None:
    cost = impl.RunCost(5e-6)
    assert all(cost.allows(100e-6, now=t) for t in (0.0, 0.1, 0.2))
    assert not impl.RunCost().allows(100e-6, now=0.0)  # never measured


def test_over_the_limit_a_probe_is_let_through_now_and_then(impl: ModuleType) -> None:
    cost = impl.RunCost(2e-4)  # e.g. runs on a thread that all waited for the GIL
    assert not cost.allows(100e-6, now=10.0)  # the first probe comes later
    assert not cost.allows(100e-6, now=10.0 + PROBE_INTERVAL / 2)
    assert cost.allows(100e-6, now=10.0 + PROBE_INTERVAL)  # a probe
    assert not cost.allows(100e-6, now=10.0 + PROBE_INTERVAL * 1.5)
    cost.add(5e-6)  # the probe ran cheap: believed at once
    assert cost.allows(100e-6, now=10.0 + PROBE_INTERVAL * 1.6)


def test_probes_of_a_slow_signature_take_a_small_share_of_the_time(impl: ModuleType) -> None:
    cost = impl.RunCost(0.1)  # 100 ms runs: probes take at most PROBE_SHARE of the time
    cost.allows(100e-6, now=0.0)
    assert not cost.allows(100e-6, now=0.1 / PROBE_SHARE / 2)
    assert cost.allows(100e-6, now=0.1 / PROBE_SHARE)


def test_allowed_runs_stay_allowed_until_well_past_the_limit(impl: ModuleType) -> None:
    cost = impl.RunCost(50e-6)
    assert cost.allows(100e-6, now=0.0)
    cost.seconds = 150e-6  # a burst of preemptions lifted the estimate a little
    assert cost.allows(100e-6, now=0.1)
    cost.seconds = STAY_FACTOR * 100e-6  # well past: sent away, and probed from now on
    assert not cost.allows(100e-6, now=0.2)
    cost.seconds = 150e-6
    # Once away, only under the limit (or a probe, not due yet) brings it back.
    assert not cost.allows(100e-6, now=0.2 + PROBE_INTERVAL / 2)
    cost.seconds = 90e-6
    assert cost.allows(100e-6, now=0.2 + PROBE_INTERVAL / 2)


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
        a, b = compiled.RunCost(first), _run_cost_py.RunCost(first)
        now = 0.0
        for _ in range(200):
            now += rng.choice([0.0, 1e-3, PROBE_INTERVAL / 3, PROBE_INTERVAL])
            if rng.random() < 0.5:
                elapsed = rng.choice([1e-6, 5e-6, 5e-5, 2e-4, 5e-3])
                a.add(elapsed)
                b.add(elapsed)
            else:
                limit = rng.choice([1e-5, 1e-4])
                assert a.allows(limit, now) == b.allows(limit, now)
            assert a.seconds == b.seconds
            assert a.below(1e-4) == b.below(1e-4)
        assert repr(a) == repr(b)
