"""`cxmpute services` through the platform client: refusals are one line naming the field (exit 1), bad input
is refused before anything is uploaded, an unreachable platform is exit 2. No container runs here."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cxmpute.cli import app
from cxmpute.settings import get_settings

runner = CliRunner()
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


def _error_line(result, code: int) -> str:
    assert result.exit_code == code and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_refusals_name_the_field_and_lists_offer_json(api_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    assert _error_line(runner.invoke(app, ["services", "ls", "no-such"]), 1) == "error (name): no service 'no-such'"
    assert _error_line(runner.invoke(app, ["services", "rm", "no-such"]), 1).startswith("error (name):")
    refused = runner.invoke(
        app, ["services", "deploy", "bafy-not-stored", "--name", "web", "--port", "8080", "--max-price", "5"]
    )
    assert _error_line(refused, 1).startswith("error (image):")
    listed = runner.invoke(app, ["services", "ls", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_a_bad_env_pair_is_refused_before_the_image_is_uploaded(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)  # exit 1, not 2: the platform is never asked
    tarball = tmp_path / "image.tar"
    tarball.write_bytes(b"not read")
    result = runner.invoke(
        app,
        [
            "services",
            "deploy",
            str(tarball),
            "--name",
            "web",
            "--port",
            "8080",
            "--max-price",
            "5",
            "--env",
            "NOEQUALS",
        ],
    )
    assert _error_line(result, 1) == "error (--env): 'NOEQUALS' is not KEY=VALUE"


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", "web"],
        ["rm", "web"],
        ["logs", "web"],
        ["deploy", "bafy", "--name", "web", "--port", "80", "--max-price", "1"],
    ],
)
def test_an_unreachable_platform_is_exit_2(args, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)
    assert "not answering" in _error_line(runner.invoke(app, ["services", *args]), 2)
