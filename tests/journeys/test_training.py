"""Distributed training: a CSV stored, two ranks trained across providers, the finished job shown."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_training_runs_as_written(journey):
    run = journey("training", timeout=600)
    shown = run.steps[-1].output
    assert "succeeded" in shown, shown
    assert "checkpoint step" in shown and "loss" in shown, shown
