"""Budgets and the step timer that stops uninterruptible loops before they overrun."""

import pytest

from verikit.core.result import Budget, StepTimer


def test_share_never_outlasts_the_parent_budget():
    parent = Budget.seconds(1.0)
    assert parent.share(0.5).deadline <= parent.deadline
    assert parent.share(2.0).deadline == parent.deadline


def test_step_timer_stops_when_the_longest_step_no_longer_fits(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("verikit.core.result.time.monotonic", lambda: clock[0])
    timer = StepTimer(Budget.seconds(0.25))  # deadline 100.25
    assert not timer.out_of_time()  # no step measured yet
    clock[0] += 0.1
    assert not timer.out_of_time()  # a 0.1 s step, 0.15 s left
    clock[0] += 0.1
    assert timer.out_of_time()  # 0.05 s left, less than a 0.1 s step
    assert timer.longest == pytest.approx(0.1)


def test_step_timer_without_budget_never_stops():
    timer = StepTimer(None)
    assert not any(timer.out_of_time() for _ in range(3))
