"""Submitting training jobs over HTTP and the CLI: bad input is refused with the field named, before anything
is leased; the rank URL answers only for a live generation."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from compute import provisions
from compute.ledger import Acct, post
from compute.models import Provider, utcnow
from compute.network import get_network
from compute.provisions import ProvisionSpec, Resources
from compute.training import cli as training_cli
from cxmpute.cli import app
from cxmpute.settings import get_settings

runner = CliRunner()
# A price range no provision asks within.
UNMATCHABLE = {"price_min_gwei": 10**12 - 1, "price_max_gwei": 10**12}
LONE_PRICE = 777_777


@pytest.fixture(scope="module")
def api(api_url, dataset_csv):
    with httpx.Client(base_url=api_url, timeout=60) as http:
        stored = http.post("/v1/storage/files", params={"name": "train.csv"}, content=dataset_csv)
        assert stored.status_code == 201, stored.text
        text = http.post("/v1/storage/files", params={"name": "notes.txt"}, content=b"not,a\nnumber,table\n")
        yield http, stored.json()["file"]["cid"], text.json()["file"]["cid"]


def _job(cid: str, **over) -> dict:
    return {"dataset_cid": cid, "world_size": 2, "steps": 10, "price_max_gwei": 5, **over}


@pytest.mark.parametrize(
    "over, field",
    [
        ({"world_size": 0}, "world_size"),
        ({"steps": 0}, "steps"),
        ({"price_min_gwei": 9, "price_max_gwei": 5}, "price_max_gwei"),
        ({"trainer": {"hidden": [0]}}, "trainer.hidden"),
        ({"backend": "nccl"}, "resources"),
    ],
)
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


def _one_line_error(result, field: str) -> None:
    """The root CLI's rule: exit 1, and one line on stderr naming the field; no traceback."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert f"({field})" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_the_cli_reports_refusals_with_the_field(api, api_url, monkeypatch):
    http, cid, _ = api
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    monkeypatch.setattr(get_settings(), "wallet_key", None)
    monkeypatch.setattr(training_cli.console, "width", 160)
    _one_line_error(
        runner.invoke(
            app, ["training", "submit", cid, "-n", "2", "--steps", "10", "--max-price", "5", "--hidden", "x"]
        ),
        "--hidden",
    )
    _one_line_error(
        runner.invoke(
            app,
            [
                "training",
                "submit",
                cid,
                "-n",
                "2",
                "--steps",
                "10",
                "--min-price",
                str(UNMATCHABLE["price_min_gwei"]),
                "--max-price",
                str(UNMATCHABLE["price_max_gwei"]),
            ],
        ),
        "price_max_gwei",
    )
    _one_line_error(runner.invoke(app, ["training", "show", "no-such-job"]), "job_id")
    listed = runner.invoke(app, ["training", "ls"])
    assert listed.exit_code == 0 and "final loss" in listed.output
    assert json.loads(runner.invoke(app, ["training", "ls", "--json"]).stdout) == http.get("/v1/training/jobs").json()


def test_the_cli_refuses_more_ranks_than_live_providers(api, api_url, monkeypatch):
    """Before any rank is placed: an asked-for world size above the live providers is one line naming it."""
    _, cid, _ = api
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    store = get_network().store
    provider = Account.create().address
    with store.write() as s:
        s.add(
            Provider(
                address=provider,
                name="one",
                region="eu",
                profile={},
                benchmark_score=1.0,
                registered_at=utcnow(),
                last_heartbeat_ts=int(time.time()),
                heartbeats=1,
                leases_completed=0,
                leases_failed=0,
                reputation=0.5,
            )
        )
        s.flush()
        post(
            s,
            key=f"stake-{provider}",
            kind="stake",
            entries=[(Acct("chain", "t"), -(10**10)), (Acct("stake", provider), 10**10)],
        )
    # A price only this test asks: the one provider it adds is nobody else's match.
    offer = provisions.create(
        store, provider, ProvisionSpec(kind="agent", price_gwei=LONE_PRICE, resources=Resources(cpu=4, memory_mb=8192))
    )
    get_network().market.sync(force=True)
    try:
        refused = runner.invoke(
            app,
            [
                "training",
                "submit",
                cid,
                "--world-size",
                "2",
                "--steps",
                "10",
                "--min-price",
                str(LONE_PRICE),
                "--max-price",
                str(LONE_PRICE),
            ],
        )
        _one_line_error(refused, "world_size")
        assert "only 1 live provider offers" in refused.stderr
    finally:
        provisions.retire(store, provider, offer.id)
        get_network().market.refresh(offer.id)


def test_an_unreachable_platform_is_exit_2(monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", "http://127.0.0.1:9")
    for args in (
        ["ls"],
        ["show", "any"],
        ["cancel", "any"],
        ["manifest", "any"],
        ["submit", "bafy", "-n", "1", "--steps", "1", "--max-price", "1"],
    ):
        result = runner.invoke(app, ["training", *args])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (args, result.output)
        assert "CXMPUTE_API_URL" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_jobs_table_folds_ids_but_never_cuts_them():
    from rich.console import Console

    job = {
        "id": "0b9e7c5e-52d1-4c3e-9a5f-1f2d3c4b5a69",
        "state": "running",
        "generation": 1,
        "step": 5,
        "spec": {"steps": 10, "world_size": 2},
        "final_loss": None,
        "created_at": "2026-12-06T10:00:00.000",
    }
    for width in (160, 60):
        narrow = Console(width=width, record=True, file=io.StringIO())
        table = training_cli._jobs_table()
        table.add_row(*training_cli._row(job))
        narrow.print(table)
        text = narrow.export_text()
        first_column = [line.split("│")[1].strip() for line in text.splitlines() if "│" in line]
        assert job["id"] in "".join(first_column), text
        assert "creat" in text  # the id leaves room for the other columns
