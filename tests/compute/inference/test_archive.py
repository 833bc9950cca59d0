"""The model archive's platform side (compute.inference.archive), in-process as the API calls it: names are
per owner, point at directory archives the owner may read, and gathering uploaded files reuses their blocks.
Clients reach it only through /v1/models/archive (tests/web/test_models_archive.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compute.inference import archive
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings
from stxrage import open_storage

ALICE, BOB = "0x" + "a" * 40, "0x" + "b" * 40


@pytest.fixture
def settings(tmp_path, platform_db_url) -> Settings:
    return Settings(home=tmp_path / "home", database_url=platform_db_url)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 2}')
    (root / "sub" / "weights.bin").write_bytes(os.urandom(200_000))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _blocks(settings: Settings) -> int:
    return sum(1 for p in (settings.data_dir / "stxrage").rglob("*") if p.is_file() and not p.name.startswith("."))


def _refusal(fn, *args) -> CxmputeError:
    with pytest.raises(CxmputeError) as caught:
        fn(*args)
    return caught.value


def test_names_are_per_owner_and_a_push_again_moves_the_name(settings, folder, tmp_path):
    first = archive.push(settings, folder, "acme/tiny", ALICE)
    assert (first.files, first.size, first.owner) == (2, sum(map(len, _files(folder).values())), ALICE)
    assert archive.push(settings, folder, "acme/tiny", ALICE).cid == first.cid  # same bytes, same CID
    assert [m.name for m in archive.ls(settings, ALICE)] == ["acme/tiny"]
    assert archive.ls(settings, BOB) == []
    assert _refusal(archive.get, settings, "acme/tiny", BOB).status_code == 404

    (folder / "config.json").write_text('{"layers": 3}')
    second = archive.push(settings, folder, "acme/tiny", ALICE)
    assert second.cid != first.cid and archive.get(settings, "acme/tiny", ALICE).cid == second.cid
    back = tmp_path / "back"
    open_storage(settings).get_dir(second.cid, back, ALICE)
    assert _files(back) == _files(folder)


def test_naming_a_cid_needs_a_directory_archive_the_owner_may_read(settings, folder):
    store = open_storage(settings)
    stored = store.put_dir(folder, owner=ALICE).file
    named = archive.name_cid(settings, "again", stored.cid, ALICE)
    assert (named.cid, named.files, named.size) == (stored.cid, 2, stored.size)

    refused = _refusal(archive.name_cid, settings, "theirs", stored.cid, BOB)  # alice's, not public
    assert (refused.status_code, refused.field) == (404, "cid")
    plain = store.put_bytes(b"just a file", owner=ALICE).file
    refused = _refusal(archive.name_cid, settings, "plain", plain.cid, ALICE)
    assert (refused.status_code, refused.field) == (422, "cid")

    store.publish(stored.cid, ALICE)
    assert archive.name_cid(settings, "shared", stored.cid, BOB).cid == stored.cid
    assert store.stat(stored.cid, BOB).pinned  # kept under bob's account, whatever alice does next


def test_gathering_stored_files_reuses_their_blocks(settings, folder, tmp_path):
    store = open_storage(settings)
    files = [(path, store.put_file(folder / path, owner=ALICE).file.cid) for path in _files(folder)]
    before = _blocks(settings)
    entry = archive.push_files(settings, "gathered", files, ALICE)
    assert _blocks(settings) == before + 1  # the directory's manifest; every chunk was stored already
    back = tmp_path / "back"
    store.get_dir(entry.cid, back, ALICE)
    assert _files(back) == _files(folder)
    assert [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".archive-")] == []

    refused = _refusal(archive.push_files, settings, "x", [("a", files[0][1]), ("a", files[1][1])], ALICE)
    assert (refused.status_code, refused.field) == (422, "files.1.path")
    for path in ("../up", "/abs", "a//b", "a\\b", "", ".", "./a", "a\x00b", "x" * 256, "\udc80"):
        assert _refusal(archive.push_files, settings, "x", [(path, files[0][1])], ALICE).field == "files.0.path"
    refused = _refusal(archive.push_files, settings, "x", [("a", files[0][1]), ("a/b", files[1][1])], ALICE)
    assert refused.field == "files.0.path"  # a file and a folder at once
    refused = _refusal(archive.push_files, settings, "x", [("ok", files[0][1]), ("b", files[1][1])], BOB)
    assert (refused.status_code, refused.field) == (404, "files.0.cid")
    refused = _refusal(archive.push_files, settings, "x", [("d", entry.cid)], ALICE)
    assert (refused.status_code, refused.field) == (422, "files.0.cid")
    assert archive.ls(settings, ALICE, limit=10) == [archive.get(settings, "gathered", ALICE)]


def test_listing_pages_and_removing_a_name_keeps_the_files(settings, folder):
    cid = archive.push(settings, folder, "m0", ALICE).cid
    for i in range(1, 5):
        archive.name_cid(settings, f"m{i}", cid, ALICE)
    pages = [[m.name for m in archive.ls(settings, ALICE, limit=2, offset=o)] for o in (0, 2, 4)]
    assert pages == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert archive.remove(settings, "m0", ALICE).cid == cid
    assert _refusal(archive.get, settings, "m0", ALICE).field == "name"
    assert _refusal(archive.remove, settings, "m0", ALICE).status_code == 404
    assert open_storage(settings).stat(cid, ALICE).kind == "dir"


def test_bad_names_and_folders_are_refused_naming_the_field(settings, folder):
    for name in ("../escape", "a..b", "-lead", "sp ace", "x" * 201, ""):
        refused = _refusal(archive.push, settings, folder, name, ALICE)
        assert (refused.status_code, refused.field) == (422, "name"), name
    assert _refusal(archive.push, settings, folder / "config.json", "file", ALICE).field == "directory"
    (folder.parent / "empty").mkdir()
    assert _refusal(archive.push, settings, folder.parent / "empty", "empty", ALICE).field == "directory"
