"""Virtual machines under TCG (the session's `cxmpute up` runs with CXMPUTE_VM_ACCEL=tcg): a tiny guest stored,
booted, snapshotted with its memory, stopped, restored, removed."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_vms_run_as_written(journey):
    run = journey("vms", timeout=600)
    assert "tcg" in run.output_of("cxmpute vms ls")
