"""Submitting training jobs over HTTP and the CLI: bad input is refused with the field named, before anything
is leased; the rank URL answers only for a live generation."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from compute.training import cli as training_cli
from compute.training.cli import app
from cxmpute.settings import get_settings

runner = CliRunner()
# A price range no provision asks within.
UNMATCHABLE = {"price_min_gwei": 10**12 - 1, "price_max_gwei": 10**12}


@pytest.fixture(scope="module")
def api(api_url, dataset_csv):
    with httpx.Client(base_url=api_url, timeout=60) as http:
        stored = http.post("/v1/storage/files", params={"name": "train.csv"}, content=dataset_csv)
        assert stored.status_code == 201, stored.text
        text = http.post("/v1/storage/files", params={"name": "notes.txt"}, content=b"not,a\nnumber,table\n")
        yield http, stored.json()["file"]["cid"], text.json()["file"]["cid"]


def _job(cid: str, **over) -> dict:
    return {"dataset_cid": cid, "world_size": 2, "steps": 10, "price_max_gwei": 5, **over}


@pytest.mark.parametrize("over, field", [
    ({"world_size": 0}, "world_size"),
    ({"steps": 0}, "steps"),
    ({"price_min_gwei": 9, "price_max_gwei": 5}, "price_max_gwei"),
    ({"trainer": {"hidden": [0]}}, "trainer.hidden"),
    ({"backend": "nccl"}, "resources"),
])
def test_invalid_specs_are_refused_naming_the_field(api, over, field):
    http, cid, _ = api
    resp = http.post("/v1/training/jobs", json=_job(cid, **over))
    assert resp.status_code == 422, resp.text
    assert field in {e["field"] for e in resp.json()["errors"]}, resp.json()


def test_a_dataset_that_is_missing_or_unusable_is_refused(api):
    http, cid, text_cid = api
    missing = http.post("/v1/training/jobs", json=_job("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"))
    assert missing.status_code == 404 and missing.json()["field"] == "dataset_cid", missing.text
    garbled = http.post("/v1/training/jobs", json=_job("not-a-cid"))
    assert garbled.status_code in (404, 422) and garbled.json()["field"] == "dataset_cid", garbled.text
    text = http.post("/v1/training/jobs", json=_job(text_cid))
    assert text.status_code == 422 and text.json()["field"] == "dataset_cid", text.text
    too_small = http.post("/v1/training/jobs", json=_job(cid, world_size=64, trainer={"batch_size": 64}))
    assert too_small.status_code == 422 and "too few" in too_small.json()["detail"], too_small.text


def test_a_price_range_no_provision_asks_within_is_refused(api):
    http, cid, _ = api
    resp = http.post("/v1/training/jobs", json=_job(cid, **UNMATCHABLE))
    assert resp.status_code == 409, resp.text
    assert resp.json()["field"] == "price_max_gwei" and "no provision matches" in resp.json()["detail"]
    assert http.get("/v1/training/jobs").json() == []  # nothing was recorded, nothing leased


def test_unknown_jobs_and_revoked_rank_urls_are_not_found(api):
    http, _, _ = api
    for method in ("GET", "DELETE"):
        resp = http.request(method, "/v1/training/jobs/no-such-job")
        assert resp.status_code == 404 and resp.json()["field"] == "job_id"
    for path in ("", "/dataset", "/checkpoint", "/rendezvous"):
        resp = http.get(f"/v1/training/ranks/stale-secret{path}")
        assert resp.status_code == 404 and resp.json()["field"] == "token", path
    resp = http.post("/v1/training/ranks/stale-secret/losses", json={"rank": 0, "points": [[1, 0.5]]})
    assert resp.status_code == 404
    resp = http.post("/v1/training/ranks/stale-secret/losses", json={"rank": -1, "points": "x"})
    assert resp.status_code == 422 and {"rank", "points"} <= {e["field"] for e in resp.json()["errors"]}


def test_the_cli_reports_refusals_with_the_field(api, api_url, monkeypatch):
    http, cid, _ = api
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    monkeypatch.setattr(get_settings(), "wallet_key", None)
    monkeypatch.setattr(training_cli.console, "width", 160)
    bad = runner.invoke(app, ["submit", cid, "-n", "2", "--steps", "10", "--max-price", "5", "--hidden", "x"])
    assert bad.exit_code == 2 and "--hidden" in bad.output
    refused = runner.invoke(app, ["submit", cid, "-n", "2", "--steps", "10", "--min-price", str(UNMATCHABLE[
        "price_min_gwei"]), "--max-price", str(UNMATCHABLE["price_max_gwei"])])
    assert refused.exit_code == 2 and "(price_max_gwei)" in refused.output, refused.output
    missing = runner.invoke(app, ["show", "no-such-job"])
    assert missing.exit_code == 2 and "(job_id)" in missing.output
    listed = runner.invoke(app, ["ls"])
    assert listed.exit_code == 0 and "final loss" in listed.output
