"""The autoscaler: up at once with the load, down one replica at a time after the load stayed low."""

from __future__ import annotations

import pytest

from compute.services.autoscale import Autoscaler, wanted


@pytest.mark.parametrize("inflight, expected", [(0, 1), (1, 1), (8, 1), (9, 2), (24, 3), (1000, 5)])
def test_wanted_replicas_follow_in_flight_requests_within_the_bounds(inflight, expected):
    assert wanted(inflight, target_inflight=8, low=1, high=5) == expected


def test_scaling_up_is_immediate():
    scaler = Autoscaler(scale_down_after_s=60)
    assert scaler.desired(inflight=30, current=1, target_inflight=8, low=1, high=5, now=0) == 4


def test_scaling_down_waits_for_the_load_to_stay_low_then_drops_one_at_a_time():
    scaler = Autoscaler(scale_down_after_s=60)
    args = dict(target_inflight=8, low=1, high=5)
    assert scaler.desired(inflight=0, current=4, now=0, **args) == 4
    assert scaler.desired(inflight=0, current=4, now=59, **args) == 4
    assert scaler.desired(inflight=0, current=4, now=60, **args) == 3
    assert scaler.desired(inflight=0, current=3, now=61, **args) == 3  # the next step waits again
    assert scaler.desired(inflight=0, current=3, now=120, **args) == 2


def test_a_burst_during_the_wait_starts_it_over():
    scaler = Autoscaler(scale_down_after_s=60)
    args = dict(target_inflight=8, low=1, high=5)
    assert scaler.desired(inflight=0, current=2, now=0, **args) == 2
    assert scaler.desired(inflight=16, current=2, now=50, **args) == 2
    assert scaler.desired(inflight=0, current=2, now=100, **args) == 2
    assert scaler.desired(inflight=0, current=2, now=160, **args) == 1


def test_never_below_the_minimum():
    scaler = Autoscaler(scale_down_after_s=0)
    assert scaler.desired(inflight=0, current=2, target_inflight=8, low=2, high=5, now=0) == 2
