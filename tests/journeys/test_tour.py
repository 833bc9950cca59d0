"""The five-minute tour: health, the catalogue, a template run, runs ls/show/rerun, a broken document, the HTTP API."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_tour_runs_as_written(journey):
    run = journey("tour", timeout=600)
    assert '"ok"' in run.output_of("/healthz")
    assert "io.template" in run.output_of("cxmpute agents list")
    assert "compute markets" in run.output_of('--input topic="compute markets"')
    assert "again" in run.output_of("cxmpute runs show")
    broken = run.output_of("flows/examples/broken.yaml")
    assert "exit status 1" in broken and "no.such.agent" in broken
    assert '"state"' in run.output_of("$API/v1/runs/$RUN")
    assert "Hello world" in run.output_of("/v1/agents/io.template/invoke")
