"""Storage: put prints a CID, stat, get back the same bytes, ls, publish, read it over HTTP."""

import re

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_storage_runs_as_written(journey):
    run = journey("storage", timeout=300)
    stat = run.output_of("cxmpute storage stat")
    cid = re.search(r"\b(b[a-z2-7]{50,}|Qm[1-9A-HJ-NP-Za-km-z]{44})\b", stat)
    assert cid, f"no CID in `cxmpute storage stat`'s output:\n{stat}"
    assert "notes.txt" in run.output_of("cxmpute storage ls")
    assert "hello from stxrage" in run.output_of("/v1/storage/files/$CID")
