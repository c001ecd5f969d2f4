"""RunCost: the estimate that decides where a signature's runs go."""

from __future__ import annotations

import pytest

from tfsfast.util.run_cost import RISE, SPIKE_FACTOR, RunCost


def test_the_first_run_is_taken_as_it_is() -> None:
    cost = RunCost()
    assert cost.seconds is None and not cost.below(1.0)
    cost.add(0.003)
    assert cost.seconds == 0.003 and cost.below(0.004) and not cost.below(0.003)


def test_a_faster_run_is_the_estimate_at_once() -> None:
    cost = RunCost(3e-3)  # e.g. the first run, or runs that waited for the GIL
    cost.add(5e-6)
    assert cost.seconds == 5e-6


def test_a_slower_run_moves_the_estimate_by_its_rise() -> None:
    cost = RunCost(10e-6)
    cost.add(20e-6)
    assert cost.seconds == pytest.approx(10e-6 + RISE * 10e-6)


def test_a_spike_alone_is_ignored() -> None:
    cost = RunCost(5e-6)
    cost.add(5e-3)  # a preempted run
    assert cost.seconds == 5e-6
    cost.add(5e-6)
    cost.add(5e-3)  # another, but not in a row
    assert cost.seconds == 5e-6
    assert cost.below(100e-6)


def test_two_spikes_in_a_row_are_believed() -> None:
    cost = RunCost(5e-6)
    cost.add(5e-3)
    cost.add(5e-3)  # the model really got slower (or the requests larger)
    assert cost.seconds == pytest.approx(5e-6 + RISE * (5e-3 - 5e-6))
    assert not cost.below(100e-6)


def test_a_rise_within_the_spike_factor_counts_at_once() -> None:
    cost = RunCost(10e-6)
    cost.add(SPIKE_FACTOR * 10e-6)
    assert cost.seconds > 10e-6
