"""Functions: deploy a folder, invoke it cold, warm and on a provider, list it, read its logs."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_functions_run_as_written(journey):
    run = journey("functions", timeout=400)
    assert "hello ada" in run.output_of("""'{"name": "ada"}'""")
    assert "hello bob" in run.output_of("""'{"name": "bob"}'""")
    assert "hello eve" in run.output_of("--max-price 5")
    assert "greeting" in run.output_of("cxmpute functions logs hello")
