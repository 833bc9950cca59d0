"""`cxmpute storage ...`: in-process for the commands, and as real processes with a storage node."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stxrage.cli import app
from tests.stxrage.conftest import free_port

runner = CliRunner()
CXMPUTE = str(Path(sys.executable).parent / "cxmpute")


def test_put_get_ls_stat_pin_rm(tmp_path):
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(1_300_000))
    put = runner.invoke(app, ["put", str(src), "--json"])
    assert put.exit_code == 0, put.output
    cid = json.loads(put.stdout)["file"]["cid"]
    out = tmp_path / "back.pdf"
    assert runner.invoke(app, ["get", cid, "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == src.read_bytes()
    part = tmp_path / "part"
    assert runner.invoke(app, ["get", cid, "-o", str(part), "--range", "100-5000"]).exit_code == 0
    assert part.read_bytes() == src.read_bytes()[100:5000]
    listed = json.loads(runner.invoke(app, ["ls", "--json"]).stdout)
    assert cid in {f["cid"] for f in listed}
    stat = json.loads(runner.invoke(app, ["stat", cid, "--json"]).stdout)
    assert stat["name"] == "report.pdf" and stat["size"] == 1_300_000
    assert runner.invoke(app, ["stat", cid, "--owner", "bob"]).exit_code == 2  # the owner's until published
    assert runner.invoke(app, ["publish", cid]).exit_code == 0
    seen = json.loads(runner.invoke(app, ["stat", cid, "--owner", "bob", "--json"]).stdout)
    assert seen["public"] is True and seen["owner"] is None
    assert runner.invoke(app, ["unpublish", cid]).exit_code == 0
    assert runner.invoke(app, ["stat", cid, "--owner", "bob"]).exit_code == 2
    assert runner.invoke(app, ["unpin", cid]).exit_code == 0
    assert runner.invoke(app, ["pin", cid]).exit_code == 0
    assert runner.invoke(app, ["rm", cid]).exit_code == 0
    gone = runner.invoke(app, ["stat", cid])
    assert gone.exit_code == 2 and "no file" in gone.output


def test_private_put_and_errors_name_the_option(tmp_path):
    src = tmp_path / "secret.txt"
    src.write_bytes(b"top secret\n" * 1000)
    put = runner.invoke(app, ["put", str(src), "--private", "--owner", "alice", "--json"])
    cid = json.loads(put.stdout)["file"]["cid"]
    assert runner.invoke(app, ["stat", cid, "--owner", "bob"]).exit_code == 2
    bad = runner.invoke(app, ["put", str(src), "--policy", "7/2"])
    assert bad.exit_code == 2 and "--policy" in bad.output
    bad = runner.invoke(app, ["get", cid, "-o", str(tmp_path / "x"), "--range", "abc", "--owner", "alice"])
    assert bad.exit_code == 2 and "--range" in bad.output


def _cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXMPUTE_HOME": str(home)}
    return subprocess.run([CXMPUTE, "storage", *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@contextmanager
def _node(tmp_path: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """`cxmpute storage node` as a process; yields its URL and where it keeps its own credential."""
    port = free_port()
    env = {**os.environ, "CXMPUTE_HOME": str(tmp_path / "node-home"), **env}
    proc = subprocess.Popen([CXMPUTE, "storage", "node", "--dir", str(tmp_path / "node"), "--port", str(port),
                             "--quota", str(4 * 1024**3), "--price", "1.25"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded wait for the node to listen
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, tmp_path / "node" / "node.token"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def node_process(tmp_path):
    with _node(tmp_path) as node:
        yield node


def test_a_node_takes_its_credential_from_the_environment(tmp_path):
    given = "cxn_" + "e" * 40
    with _node(tmp_path, CXMPUTE_STORAGE_NODE_CREDENTIAL=given) as (url, own):
        assert httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {given}"}).status_code == 200
        assert httpx.get(f"{url}/info").status_code == 401
        assert not own.exists()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _round_trip_through_a_node(tmp_path: Path, node: tuple[str, Path], size: int) -> None:
    home = tmp_path / "client-home"
    node_url, credential = node
    refused = _cli(home, "nodes", "add", node_url)
    assert refused.returncode == 2 and "--credential-file" in refused.stderr
    added = _cli(home, "nodes", "add", node_url, "--credential-file", str(credential), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["price_per_gb_month"] == 1.25
    src = tmp_path / "big.bin"
    with src.open("wb") as f:
        for _ in range(size // (1 << 24)):
            f.write(os.urandom(1 << 24))
        f.write(os.urandom(size % (1 << 24)))
    put = _cli(home, "put", str(src), timeout=1200)
    assert put.returncode == 0, put.stderr
    cid = put.stdout.strip()
    out = tmp_path / "back.bin"
    got = _cli(home, "get", cid, "-o", str(out), timeout=1200)
    assert got.returncode == 0, got.stderr
    assert _sha256(out) == _sha256(src)
    listed = _cli(home, "nodes", "ls", "--json")
    assert json.loads(listed.stdout)[0]["status"] == "active"


def test_cli_processes_round_trip_through_a_storage_node(tmp_path, node_process):
    _round_trip_through_a_node(tmp_path, node_process, 3 * 1024 * 1024 + 1)


@pytest.mark.slow
def test_one_gib_round_trip_through_the_cli_and_a_node(tmp_path, node_process):
    _round_trip_through_a_node(tmp_path, node_process, 1024**3)


def test_directories_go_in_and_come_out_whole(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(os.urandom(800_000))
    (src / "config.json").write_text("{}")
    put = runner.invoke(app, ["put", str(src), "--json"])
    assert put.exit_code == 0, put.output
    doc = json.loads(put.stdout)["file"]
    assert doc["kind"] == "dir"
    assert runner.invoke(app, ["get", doc["cid"], "-o", str(tmp_path / "back")]).exit_code == 0
    assert (tmp_path / "back" / "sub" / "w.bin").read_bytes() == (src / "sub" / "w.bin").read_bytes()
    assert (tmp_path / "back" / "config.json").read_text() == "{}"
