"""The model archive's platform side (compute.inference.archive), in-process as the API calls it: names are
per owner and point at directory archives the owner may read. Clients reach it only through
/v1/models/archive, after uploading the folder as one tar (tests/web/test_models_archive.py)."""

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


def _push(settings: Settings, folder: Path, name: str, owner: str) -> archive.ArchivedOut:
    """What a push amounts to on the platform: the folder stored as a directory archive, then named."""
    return archive.name_cid(settings, name, open_storage(settings).put_dir(folder, owner=owner).file.cid, owner)


def _refusal(fn, *args) -> CxmputeError:
    with pytest.raises(CxmputeError) as caught:
        fn(*args)
    return caught.value


def test_names_are_per_owner_and_a_push_again_moves_the_name(settings, folder, tmp_path):
    first = _push(settings, folder, "acme/tiny", ALICE)
    assert (first.files, first.size, first.owner) == (2, sum(map(len, _files(folder).values())), ALICE)
    assert _push(settings, folder, "acme/tiny", ALICE).cid == first.cid  # same bytes, same CID
    assert [m.name for m in archive.ls(settings, ALICE)] == ["acme/tiny"]
    assert archive.ls(settings, BOB) == []
    assert _refusal(archive.get, settings, "acme/tiny", BOB).status_code == 404

    (folder / "config.json").write_text('{"layers": 3}')
    second = _push(settings, folder, "acme/tiny", ALICE)
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


def test_listing_pages_and_removing_a_name_keeps_the_files(settings, folder):
    cid = _push(settings, folder, "m0", ALICE).cid
    for i in range(1, 5):
        archive.name_cid(settings, f"m{i}", cid, ALICE)
    pages = [[m.name for m in archive.ls(settings, ALICE, limit=2, offset=o)] for o in (0, 2, 4)]
    assert pages == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert archive.remove(settings, "m0", ALICE).cid == cid
    assert _refusal(archive.get, settings, "m0", ALICE).field == "name"
    assert _refusal(archive.remove, settings, "m0", ALICE).status_code == 404
    assert open_storage(settings).stat(cid, ALICE).kind == "dir"


def test_bad_names_and_empty_archives_are_refused_naming_the_field(settings, folder):
    cid = open_storage(settings).put_dir(folder, owner=ALICE).file.cid
    for name in ("../escape", "a..b", "-lead", "sp ace", "x" * 201, ""):
        refused = _refusal(archive.name_cid, settings, name, cid, ALICE)
        assert (refused.status_code, refused.field) == (422, "name"), name
    (folder.parent / "empty").mkdir()
    empty = open_storage(settings).put_dir(folder.parent / "empty", owner=ALICE).file.cid
    refused = _refusal(archive.name_cid, settings, "empty", empty, ALICE)
    assert (refused.status_code, refused.field) == (422, "cid")
