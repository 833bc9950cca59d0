"""A folder as one tar upload (POST /v1/storage/files?archive=true) over real HTTP: a tar of regular files
and folders becomes one directory archive; a hostile tar is refused with 422 naming the body, and leaves
nothing stored, nothing unpacked anywhere."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from cxmpute.client import local_address
from cxmpute.settings import get_settings, reset_settings
from stxrage import archive_upload

FILES = "/v1/storage/files"


@pytest.fixture
def http(api_url):
    """Anonymous: this machine's local wallet."""
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return _member(name), data


def _stored() -> tuple[set[str], list[str]]:
    """What the platform holds: the local wallet's files and every block, and any unpacking left behind."""
    data_dir = get_settings().data_dir
    blocks = {p.as_posix() for p in (data_dir / "stxrage").rglob("*") if p.is_file()}
    return blocks, [p.name for p in data_dir.iterdir() if p.name.startswith(".upload-")]


def _refused(http: httpx.Client, body: bytes, says: str) -> None:
    held = {f["cid"] for f in http.get(FILES).json()}
    before = _stored()
    resp = http.post(FILES, params={"archive": True, "name": "hostile"}, content=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "body" and says in resp.json()["detail"], resp.json()
    assert {f["cid"] for f in http.get(FILES).json()} == held
    assert _stored() == before


def test_a_tar_becomes_one_directory_archive(http):
    weights = os.urandom(300_000)
    body = _tar(
        (_member("./", tarfile.DIRTYPE), None),
        _file("./config.json", b"{}"),
        (_member("./w", tarfile.DIRTYPE), None),
        _file("./w/weights.bin", weights),
        (_member("empty", tarfile.DIRTYPE), None),
        _file("n" * 150 + "/é.txt", b"long"),
    )
    resp = http.post(FILES, params={"archive": True, "name": "model"}, content=body)
    assert resp.status_code == 201, resp.text
    stats = resp.json()
    cid = stats["file"]["cid"]
    assert (stats["file"]["kind"], stats["file"]["name"], stats["file"]["owner"]) == ("dir", "model", local_address())
    listing = http.get(f"{FILES}/{cid}/archive").json()
    assert {e["path"]: e["size"] for e in listing} == {
        "config.json": 2,
        "w/weights.bin": len(weights),
        "n" * 150 + "/é.txt": 4,
    }
    assert http.get(f"{FILES}/{cid}/archive/w/weights.bin").content == weights
    assert [p for p in get_settings().data_dir.iterdir() if p.name.startswith(".upload-")] == []


@pytest.mark.parametrize(
    ("members", "says"),
    [
        pytest.param([_file("/etc/cxmpute-escape", b"x")], "relative", id="absolute-path"),
        pytest.param([_file("ok.txt", b"x"), _file("../cxmpute-escape", b"x")], "relative", id="dot-dot"),
        pytest.param([_file("a/../../cxmpute-escape", b"x")], "relative", id="dot-dot-inside"),
        pytest.param([(_member("link", tarfile.SYMTYPE, "/etc/passwd"), None)], "symbolic link", id="symlink-out"),
        pytest.param(
            [(_member("up", tarfile.SYMTYPE, ".."), None), _file("up/cxmpute-escape", b"x")],
            "symbolic link",
            id="symlink-then-write-through",
        ),
        pytest.param([_file("a", b"x"), (_member("b", tarfile.LNKTYPE, "a"), None)], "hard link", id="hardlink"),
        pytest.param([(_member("tty", tarfile.CHRTYPE), None)], "device", id="char-device"),
        pytest.param([(_member("disk", tarfile.BLKTYPE), None)], "device", id="block-device"),
        pytest.param([(_member("pipe", tarfile.FIFOTYPE), None)], "fifo", id="fifo"),
        pytest.param([_file("a", b"1"), _file("a", b"2")], "twice", id="duplicate"),
        pytest.param([_file("a", b"1"), _file("a/b", b"2")], "both a file and a folder", id="file-then-folder"),
        pytest.param([_file("bad\nname", b"1")], "relative", id="control-character"),
        pytest.param([_file("a\\b", b"1")], "relative", id="backslash"),
        pytest.param([_file("x" * 256, b"1")], "255 bytes", id="long-part"),
        pytest.param([_file("x/" * 500 + "x", b"1")], "1000 characters", id="long-path"),
        pytest.param([(_member("d", tarfile.DIRTYPE), None)], "no files", id="no-files"),
    ],
)
def test_hostile_tars_are_refused_and_leave_nothing(http, tmp_path, members, says):
    _refused(http, _tar(*members), says)
    assert not Path("/etc/cxmpute-escape").exists()
    assert not (get_settings().data_dir / "cxmpute-escape").exists()


def test_a_name_that_is_not_utf8_is_refused(http):
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        tar.addfile(_member("caf\udce9.txt"), io.BytesIO(b""))
    _refused(http, out.getvalue(), "UTF-8")


def test_what_is_not_a_tar_is_refused(http):
    _refused(http, b"", "not a readable tar")
    _refused(http, b"not a tar at all" * 100, "not a readable tar")
    whole = _tar(_file("big.bin", os.urandom(20_000)))
    _refused(http, whole[:5000], "not a readable tar")  # cut off inside the file's data


def test_a_tar_bomb_over_the_member_cap_is_refused_before_unpacking_it(http, monkeypatch):
    monkeypatch.setattr(archive_upload, "MAX_MEMBERS", 50)
    _refused(http, _tar(*(_file(f"f{i}", b"") for i in range(51))), "more than 50 members")
    assert (
        http.post(FILES, params={"archive": True}, content=_tar(*(_file(f"f{i}", b"") for i in range(50)))).status_code
        == 201
    )


def test_unpacked_files_are_capped_by_the_upload_limit(http, monkeypatch):
    """A sparse member is a few blocks of tar that unpack to its full size: the cap is on what unpacks."""
    sparse = io.BytesIO()
    with tarfile.open(fileobj=sparse, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_member("ok.txt"), io.BytesIO(b""))
    body = bytearray(sparse.getvalue())
    header = bytearray(body[:512])
    # A GNU sparse member: 2 MiB apparent, one 512-byte data run at the start, so 1 KiB of tar.
    header[0:100] = b"hole.bin".ljust(100, b"\0")
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[124:136] = b"%011o\0" % 512
    header[386:398] = b"%011o\0" % 0
    header[398:410] = b"%011o\0" % 512
    header[482] = 0
    header[483:495] = b"%011o\0" % (2 * 2**20)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    body = bytes(header) + bytes(512) + bytes(1024)
    monkeypatch.setenv("CXMPUTE_STORAGE_MAX_UPLOAD_MB", "1")
    reset_settings()
    try:
        _refused(http, body, "more than this upload's limit")
        _refused(
            http,
            _tar(_file("a.bin", os.urandom(600_000)), _file("b.bin", os.urandom(600_000))),
            "more than this upload's limit",
        )
    finally:
        monkeypatch.delenv("CXMPUTE_STORAGE_MAX_UPLOAD_MB")
        reset_settings()
