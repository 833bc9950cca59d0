"""Folder ingest (confined to the ingest roots) and `cxmpute memory write|search|ask|ls` through the API."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from agxnt.memory.agents import WriteMemory
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings, reset_settings

PAGES = {
    "ocean.txt": "Blue whales are the largest animals ever known to have lived on Earth.",
    "volcano.txt": "Mount Etna in Sicily is one of the most active volcanoes in the world.",
    "notes/bread.txt": "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "skip.md": "Markdown is not matched by the default pattern.",
}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "ingest"
    for name, text in PAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


async def test_write_memory_reads_a_folder_inside_the_ingest_roots(ctx_for, owners, folder):
    ctx = ctx_for(owners[0])
    ctx.settings = Settings(home=ctx.settings.home, memory_ingest_roots=[folder.parent])
    out = await WriteMemory()({"memory": "files", "folder": str(folder), "recursive": True}, ctx)
    assert out.ids == ["notes/bread.txt", "ocean.txt", "volcano.txt"]
    flat = await WriteMemory()({"memory": "flat", "folder": "ingest"}, ctx)  # relative to the first root
    assert flat.ids == ["ocean.txt", "volcano.txt"]


@pytest.mark.parametrize("folder_arg, status", [("/etc", 403), ("../../", 403), ("missing", 404)])
async def test_folder_outside_the_roots_or_missing_is_refused(ctx_for, owners, folder, folder_arg, status):
    ctx = ctx_for(owners[0])
    ctx.settings = Settings(home=ctx.settings.home, memory_ingest_roots=[folder])
    with pytest.raises(CxmputeError) as err:
        await WriteMemory()({"memory": "files", "folder": folder_arg}, ctx)
    assert (err.value.status_code, err.value.field) == (status, "folder")
    assert ctx.services.memory.list_memories(ctx.owner) == []


async def test_symlink_out_of_the_root_is_not_followed(ctx_for, owners, folder, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("private key material")
    (folder / "leak.txt").symlink_to(outside)
    ctx = ctx_for(owners[0])
    ctx.settings = Settings(home=ctx.settings.home, memory_ingest_roots=[folder])
    out = await WriteMemory()({"memory": "files", "folder": str(folder)}, ctx)
    assert "leak.txt" not in out.ids


@pytest.fixture
def cli(platform, api_url, monkeypatch):
    """`cxmpute memory ...` against the API served for real, as this machine's local wallet."""
    from cxmpute.cli import app

    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["memory", *args])
    monkeypatch.delenv("CXMPUTE_API_URL")
    reset_settings()


def test_cli_write_search_ask_ls_through_the_api(cli, api_url, folder):
    memory = f"cli-{uuid.uuid4().hex[:8]}"
    files = [str(folder / "ocean.txt"), str(folder / "volcano.txt")]
    result = cli(
        "write",
        "-m",
        memory,
        "--meta",
        "lang=en",
        "-f",
        files[0],
        "-f",
        files[1],
        "Sharks have skeletons made of cartilage.",
    )
    assert result.exit_code == 0, result.output
    assert "stored 3 document(s)" in result.output
    # written as the local wallet, whose memories the API shows an anonymous caller on this machine
    listed = httpx.get(f"{api_url}/v1/memories").json()
    assert {"name": memory, "count": 3} in listed
    searched = httpx.post(
        f"{api_url}/v1/agents/memory.search/invoke",
        json={"input": {"memory": memory, "query": "largest animal", "k": 1}},
    ).json()
    assert searched["output"]["ids"] == ["ocean.txt"]

    result = cli("search", "-m", memory, "--json", "-k", "1", "largest animal")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ids"] == ["ocean.txt"]
    table = cli("search", "-m", memory, "-k", "1", "largest animal")
    assert table.exit_code == 0 and "ocean.txt" in table.stdout

    result = cli("search", "-m", memory, "--json", "--filter", json.dumps({"source": {"$eq": files[1]}}), "anything")
    assert json.loads(result.stdout)["ids"] == ["volcano.txt"]

    result = cli("ask", "-m", memory, "--json", "-k", "1", "Which volcano is in Sicily?")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passage_ids"] == ["volcano.txt"]

    result = cli("ls", "--json")
    assert {"name": memory, "count": 3} in json.loads(result.stdout)
    result = cli("ls", memory, "--json", "--limit", "2")
    page = json.loads(result.stdout)
    assert page["total"] == 3 and len(page["items"]) == 2
    assert cli("ls", "--owner", "local").exit_code != 0  # no pseudo-account to act as


def test_cli_errors_are_one_line_naming_the_field(cli):
    result = cli("search", "-m", f"nope-{uuid.uuid4().hex[:8]}", "x")
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
    result = cli("search", "--filter", '{"a": {"$regex": 1}}', "x")
    assert result.exit_code == 1 and "invalid filter" in result.output
    result = cli("search", "--filter", "{not json", "x")
    assert result.exit_code == 1 and "--filter" in result.output
    result = cli("write", "--meta", "novalue", "text")
    assert result.exit_code == 1 and "--meta" in result.output
