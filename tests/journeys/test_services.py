"""Container services: build and save an image, deploy it, reach it through the gateway, remove it."""

import pytest

from tests.support.readme import docker_answers

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]


def test_services_run_as_written(journey):
    if not docker_answers():
        pytest.skip("no Docker engine answers `docker info`: the services journey builds and runs an image")
    run = journey("services", timeout=420)
    assert "hello from a Cxmpute service" in run.output_of("/v1/services/hello/proxy/")
