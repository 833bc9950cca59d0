"""The model archive: a pushed model folder comes back byte for byte, loads with from_pretrained, and a
corrupted chunk is caught on download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from compute.inference import archive
from cxmpute.cli import app
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings


@pytest.fixture
def settings(tmp_path, platform_db_url) -> Settings:
    return Settings(home=tmp_path / "home", database_url=platform_db_url)


def _files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_pulled_model_matches_the_pushed_bytes_and_loads(settings, tiny_lm, tmp_path):
    pushed = archive.push(settings, tiny_lm, "acme/tiny-lm")
    assert pushed.files == len(_files(tiny_lm)) and pushed.size == sum(map(len, _files(tiny_lm).values()))

    dest = archive.pull(settings, "acme/tiny-lm", tmp_path / "pulled")
    assert _files(dest) == _files(tiny_lm)
    original, pulled = AutoModelForCausalLM.from_pretrained(tiny_lm), AutoModelForCausalLM.from_pretrained(dest)
    for (name, a), (_, b) in zip(original.state_dict().items(), pulled.state_dict().items()):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(dest)("The quick").input_ids == \
        AutoTokenizer.from_pretrained(tiny_lm)("The quick").input_ids

    assert [m.name for m in archive.ls(settings)] == ["acme/tiny-lm"]
    assert archive.ls(settings, owner="someone-else") == []


def test_pushing_again_moves_the_name_and_identical_content_keeps_its_cid(settings, tiny_lm, tmp_path):
    first = archive.push(settings, tiny_lm, "m")
    assert archive.push(settings, tiny_lm, "m").cid == first.cid
    changed = tmp_path / "changed"
    shutil.copytree(tiny_lm, changed)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "note": "v2"}))
    second = archive.push(settings, changed, "m")
    assert second.cid != first.cid
    assert archive.get(settings, "m").cid == second.cid
    pulled = archive.pull(settings, "m", tmp_path / "out")
    assert json.loads((pulled / "config.json").read_text())["note"] == "v2"


def test_a_corrupted_chunk_fails_the_pull_and_leaves_nothing(settings, tiny_lm, tmp_path):
    archive.push(settings, tiny_lm, "fragile")
    blocks = [p for p in (settings.data_dir / "stxrage").rglob("*") if p.is_file() and not p.name.startswith(".")]
    biggest = max(blocks, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    with pytest.raises(CxmputeError):
        archive.pull(settings, "fragile", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


def test_refusals_name_the_field(settings, tiny_lm, tmp_path):
    with pytest.raises(CxmputeError) as caught:
        archive.pull(settings, "missing", tmp_path / "x")
    assert (caught.value.status_code, caught.value.field) == (404, "name")
    with pytest.raises(CxmputeError) as caught:
        archive.push(settings, tiny_lm, "../escape")
    assert caught.value.field == "name"
    with pytest.raises(CxmputeError) as caught:
        archive.push(settings, tiny_lm / "config.json", "file")
    assert caught.value.field == "directory"
    archive.push(settings, tiny_lm, "ok")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(CxmputeError) as caught:
        archive.pull(settings, "ok", tmp_path / "busy")
    assert caught.value.field == "dest"
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_an_archive_name_resolves_to_a_loadable_folder(settings, tiny_lm):
    archive.push(settings, tiny_lm, "served")
    folder = archive.resolve(settings, "archive:served")
    assert _files(Path(folder)) == _files(tiny_lm)
    assert archive.resolve(settings, "archive:served") == folder  # pulled once
    assert archive.resolve(settings, "org/model") == "org/model"


def test_cli_push_ls_pull(tiny_lm, tmp_path):
    runner = CliRunner()
    pushed = runner.invoke(app, ["models", "push", str(tiny_lm), "--name", "cli/tiny"])
    assert pushed.exit_code == 0, pushed.output
    listed = runner.invoke(app, ["models", "ls", "--json"])
    assert "cli/tiny" in [m["name"] for m in json.loads(listed.stdout)]
    pulled = runner.invoke(app, ["models", "pull", "cli/tiny", str(tmp_path / "dest")])
    assert pulled.exit_code == 0, pulled.output
    assert _files(tmp_path / "dest") == _files(tiny_lm)
    again = runner.invoke(app, ["models", "pull", "cli/tiny", str(tmp_path / "dest")])
    assert again.exit_code == 1 and isinstance(again.exception, SystemExit), again.output
    assert again.stderr.strip().startswith("error (dest):") and "not an empty directory" in again.stderr
    missing = runner.invoke(app, ["models", "pull", "no/such-model", str(tmp_path / "other")])
    assert missing.exit_code == 1 and missing.stderr.strip() == "error (name): no model named 'no/such-model' in the archive"
