"""`cxmpute inference serve` and `cxmpute models`: serving nothing is one line naming --model (exit 1) before
any model library loads; an ``archive:NAME`` model is pulled through the platform's API, once per CID; the
commands keep the model libraries, the database and storage out of their module's imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxmpute.cli import app
from cxmpute.client import PlatformClient, PlatformError
from cxmpute.settings import reset_settings

runner = CliRunner()


def test_serving_nothing_is_one_line_naming_model():
    result = runner.invoke(app, ["inference", "serve"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert result.stderr.strip() == "error (--model): give at least one --model, --embedding, --image or --speech"


def test_the_commands_module_imports_light():
    heavy = ("torch", "transformers", "sqlalchemy", "stxrage", "compute.inference.archive")
    code = f"import sys, compute.inference.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def platform(api_url, monkeypatch):
    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    with PlatformClient() as client:
        yield client
    monkeypatch.delenv("CXMPUTE_API_URL")
    reset_settings()


def test_an_archive_name_resolves_through_the_api_once_per_cid(platform, tmp_path, monkeypatch):
    from compute.inference import cli

    src = tmp_path / "tiny"
    (src / "nested").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model_type": "tiny"}))
    (src / "nested" / "weights.bin").write_bytes(bytes(range(256)) * 400)
    pushed = runner.invoke(app, ["models", "push", str(src), "--name", "served/tiny"])
    assert pushed.exit_code == 0, pushed.output

    folder = cli.resolve(platform, "archive:served/tiny")
    assert folder == str(platform.settings.data_dir / "models" / pushed.stdout.strip())
    assert {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()
    } == {
        "config.json": (src / "config.json").read_bytes(),
        "nested/weights.bin": (src / "nested" / "weights.bin").read_bytes(),
    }

    def no_second_pull(*args):
        raise AssertionError("pulled again")

    monkeypatch.setattr(cli, "_pull", no_second_pull)
    assert cli.resolve(platform, "archive:served/tiny") == folder
    assert cli.resolve(platform, "org/model") == "org/model"
    with pytest.raises(PlatformError) as caught:
        cli.resolve(platform, "archive:no/such")
    assert (caught.value.status_code, caught.value.field) == (404, "name")
