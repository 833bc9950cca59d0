"""`cxmpute secrets set|ls|rm` through the API served for real, as this machine's local wallet."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from cxmpute.client import local_address
from cxmpute.settings import get_settings, reset_settings


@pytest.fixture
def cli(api_url, monkeypatch):
    from cxmpute.cli import app

    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    runner = CliRunner()
    yield lambda *args, input=None: runner.invoke(app, ["secrets", *args], input=input)
    monkeypatch.delenv("CXMPUTE_API_URL")
    reset_settings()


def test_set_ls_rm_through_the_api(cli, api_url):
    name = f"bot_token_{uuid.uuid4().hex[:8]}"
    saved = cli("set", name, "--stdin", input="s3cret-value-123\n")
    assert saved.exit_code == 0 and f"saved {name}" in saved.output
    assert saved.exit_code == 0, saved.output
    # stored for the local wallet, as the API lists it to an anonymous caller on this machine
    assert name in {s["name"] for s in httpx.get(f"{api_url}/v1/secrets").json()["items"]}
    from agxnt.secrets.store import store_for

    assert store_for(get_settings()).resolve(local_address(), [name]) == {name: "s3cret-value-123"}

    listed = cli("ls", "--json")
    assert listed.exit_code == 0, listed.output
    assert name in {s["name"] for s in json.loads(listed.stdout)}
    assert "s3cret-value-123" not in listed.output
    table = cli("ls")
    assert table.exit_code == 0 and name in table.stdout.replace("\n", "").replace(" ", "").replace("│", "")

    assert cli("rm", name).exit_code == 0
    assert name not in {s["name"] for s in httpx.get(f"{api_url}/v1/secrets").json()["items"]}
    again = cli("rm", name)
    assert again.exit_code == 1 and f"no secret named {name!r}" in again.output and "Traceback" not in again.output
    assert "s3cret-value-123" not in saved.output + listed.output + table.output + again.output


def test_refusals_name_the_field(cli):
    short = cli("set", "token_x", "--stdin", input="short\n")
    assert short.exit_code == 1 and "value" in short.output
    bad = cli("set", "9bad name", "--stdin", input="long-enough-value\n")
    assert bad.exit_code == 1 and "name" in bad.output
    assert cli("ls", "--owner", "local").exit_code != 0  # no pseudo-account to act as
