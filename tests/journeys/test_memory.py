"""Memory: write, search, list; then a tiny model served on the network answers `memory ask`."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_memory_runs_as_written(journey):
    run = journey("memory", timeout=600)
    assert "Providers publish" in run.output_of("cxmpute memory search")
    assert run.output_of("cxmpute memory ask").strip()
