"""Deployments: deploy the prefect.yaml, list, run one and watch it complete, pause and resume."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_deployments_run_as_written(journey):
    run = journey("deployments", timeout=400)
    assert "4 deployment(s)" in run.output_of("cxmpute deployments ls")
    assert ": Completed on " in run.output_of("cxmpute deployments run hello-hourly")
    assert "paused cxmpute-template/diamond-nightly" in run.output_of("cxmpute deployments pause")
