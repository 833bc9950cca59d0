"""Round trips, range reads, deduplication, pins, deletes, owner isolation and encryption."""

from __future__ import annotations

import os
import random

import pytest

from cxmpute.errors import Forbidden, NotFound
from stxrage import cid as cids
from stxrage import open_storage
from stxrage.chunker import BLOCK_LIMIT, MAX_CHUNK
from stxrage.errors import NotEnoughNodes, StorageError
from stxrage.models import Erasure, Replicas, parse_policy


@pytest.mark.parametrize("size", [0, 1, 4095, MAX_CHUNK, MAX_CHUNK + 1, 5 * 1024 * 1024 + 17])
def test_round_trip_is_bit_for_bit(storage, size):
    data = os.urandom(size)
    stats = storage.put_bytes(data, name="f.bin")
    assert stats.file.size == size
    assert storage.get_bytes(stats.file.cid) == data
    assert cids.codec_of(stats.file.cid) == "dag-json"


def test_range_reads_match_slices(storage):
    data = os.urandom(3 * 1024 * 1024 + 5)
    cid = storage.put_bytes(data).file.cid
    rng = random.Random(7)
    for _ in range(25):
        start = rng.randrange(0, len(data))
        end = rng.randrange(start, len(data) + 1)
        assert storage.get_bytes(cid, start=start, end=end) == data[start:end]
    assert storage.get_bytes(cid, start=len(data)) == b""
    with pytest.raises(StorageError) as exc:
        storage.get_bytes(cid, start=len(data) + 1)
    assert exc.value.field == "range"


def test_files_stream_from_disk_to_disk(storage, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    info = storage.put_file(src).file
    assert info.name == "src.bin"
    out = storage.get_file(info.cid, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()


def test_identical_content_is_stored_once(storage):
    data = os.urandom(2 * 1024 * 1024)
    first = storage.put_bytes(data)
    again = storage.put_bytes(data, name="other name")
    assert again.file.cid == first.file.cid
    assert again.new_blocks == 0 and again.bytes_uploaded == 0
    assert storage.put_bytes(data + b"tail").reused_blocks >= first.new_blocks - 2


def test_editing_the_middle_stores_only_nearby_chunks(storage):
    rng = random.Random(1)
    data = bytearray(rng.randbytes(20 * 1024 * 1024))
    first = storage.put_bytes(bytes(data))
    middle = len(data) // 2
    data[middle : middle + 1024 * 1024] = rng.randbytes(1024 * 1024)
    edited = storage.put_bytes(bytes(data))
    # 1 MiB of new bytes spans ~4 chunks of ~320 KiB, plus the two cut at its edges and the manifest.
    assert edited.new_blocks <= 8
    assert edited.reused_blocks >= first.file.chunks - 8
    assert storage.get_bytes(edited.file.cid) == bytes(data)


def test_every_stored_block_fits_ipfs_limits(storage):
    info = storage.put_bytes(os.urandom(4 * 1024 * 1024), private=True).file
    for chunk in storage.manifest(info.cid).chunks:
        assert chunk.size <= MAX_CHUNK
    for path in (storage.root / "blocks").glob("*/*"):
        assert path.stat().st_size <= BLOCK_LIMIT


def test_pin_unpin_gc_and_delete(storage):
    keep = storage.put_bytes(os.urandom(700_000)).file
    drop = storage.put_bytes(os.urandom(700_000)).file
    storage.unpin(drop.cid)
    assert storage.stat(drop.cid).pinned is False
    assert storage.gc() > 0
    with pytest.raises(NotFound):
        storage.stat(drop.cid)
    assert storage.get_bytes(keep.cid)
    storage.delete(keep.cid)
    assert storage.ls() == []
    assert not list((storage.root / "blocks").glob("*/*"))


def test_shared_blocks_survive_deleting_one_file(storage):
    common = os.urandom(1024 * 1024)
    a = storage.put_bytes(common + os.urandom(600_000)).file
    b = storage.put_bytes(common + os.urandom(600_000)).file
    storage.delete(a.cid)
    assert storage.get_bytes(b.cid)[: len(common)] == common


def test_another_account_cannot_read_list_or_delete_a_private_file(storage):
    data = os.urandom(900_000)
    mine = storage.put_bytes(data, owner="alice", private=True).file
    assert storage.ls("mallory") == []
    with pytest.raises(NotFound):
        storage.get_bytes(mine.cid, owner="mallory")
    with pytest.raises(NotFound):
        storage.stat(mine.cid, owner="mallory")
    with pytest.raises(NotFound):
        storage.delete(mine.cid, owner="mallory")
    with pytest.raises(NotFound):
        storage.pin(mine.cid, owner="mallory")
    assert storage.get_bytes(mine.cid, owner="alice") == data


def test_files_are_the_owners_until_published(storage):
    data = os.urandom(300_000)
    mine = storage.put_bytes(data, owner="alice").file
    assert mine.public is False and mine.owner == "alice"
    for attempt in (storage.get_bytes, storage.stat, storage.pin, storage.manifest):
        with pytest.raises(NotFound):
            attempt(mine.cid, owner="bob")
    with pytest.raises(NotFound):
        storage.publish(mine.cid, owner="bob")
    storage.publish(mine.cid, owner="alice")
    seen = storage.stat(mine.cid, owner="bob")
    assert seen.public is True and seen.owner is None  # who stored it is alice's business
    assert storage.stat(mine.cid, owner="alice").owner == "alice"
    storage.publish(mine.cid, owner="alice", public=False)
    with pytest.raises(NotFound):
        storage.get_bytes(mine.cid, owner="bob")
    sealed = storage.put_bytes(data, owner="alice", private=True).file
    with pytest.raises(StorageError) as exc:
        storage.publish(sealed.cid, owner="alice")
    assert exc.value.field == "cid"
    with pytest.raises(StorageError) as exc:
        storage.put_bytes(data, owner="alice", private=True, public=True)
    assert exc.value.field == "public"


def test_public_files_read_by_cid_but_only_the_owner_deletes(storage):
    data = os.urandom(300_000)
    public = storage.put_bytes(data, owner="alice", public=True).file
    assert storage.get_bytes(public.cid, owner="bob") == data
    with pytest.raises(Forbidden):
        storage.delete(public.cid, owner="bob")
    with pytest.raises(Forbidden):
        storage.publish(public.cid, owner="bob", public=False)
    kept = storage.pin(public.cid, owner="bob")
    assert kept.owner == "bob" and kept.public is False  # bob's own entry, bob's only
    storage.delete(public.cid, owner="alice")
    assert storage.get_bytes(public.cid, owner="bob") == data  # bob's pin keeps it
    with pytest.raises(NotFound):
        storage.get_bytes(public.cid, owner="carol")


def test_the_disk_holds_only_ciphertext_of_a_private_file(storage):
    marker = b"confidential-ledger-line;" * 40_000
    info = storage.put_bytes(marker, owner="alice", private=True).file
    stored = [p.read_bytes() for p in (storage.root / "blocks").glob("*/*")]
    assert stored and all(b"confidential-ledger" not in blob for blob in stored)
    assert cids.codec_of(info.cid) == "raw"  # the manifest itself is sealed
    # Same content from two owners never shares ciphertext; the same owner's copies deduplicate.
    other = storage.put_bytes(marker, owner="bob", private=True)
    assert other.reused_blocks == 0
    again = storage.put_bytes(marker, owner="alice", private=True)
    assert again.new_blocks == 1  # only the freshly sealed manifest


def test_bad_input_names_the_field(storage):
    with pytest.raises(StorageError) as exc:
        storage.stat("nonsense")
    assert exc.value.field == "cid"
    with pytest.raises(NotEnoughNodes) as exc:
        storage.put_bytes(b"x", policy=Replicas(copies=3))
    assert exc.value.field == "policy"
    with pytest.raises(ValueError):
        parse_policy("6/4")
    assert parse_policy("4/6") == Erasure(k=4, n=6)
    assert parse_policy("replicas:2") == Replicas(copies=2)


def test_open_storage_is_the_services_handle():
    from agxnt.context import Services

    storage = Services().storage
    assert storage is open_storage()
    cid = storage.put_bytes(b"hello from an agent").file.cid
    assert storage.get_bytes(cid) == b"hello from an agent"


@pytest.mark.parametrize("private", [False, True])
def test_a_manifest_too_big_for_one_block_splits_into_parts(storage, monkeypatch, private):
    import stxrage.writes

    # Shrink the limits so a few MiB behave like a file of tens of GiB.
    monkeypatch.setattr(stxrage.writes, "BLOCK_LIMIT", 1500)
    monkeypatch.setattr(stxrage.writes, "_PART_CHUNKS", 4)
    data = os.urandom(5 * 1024 * 1024)
    info = storage.put_bytes(data, private=private).file
    assert len(storage.manifest(info.cid).chunks) == info.chunks
    assert storage.get_bytes(info.cid) == data
    assert storage.get_bytes(info.cid, start=3_000_000, end=3_000_100) == data[3_000_000:3_000_100]
    storage.delete(info.cid)
    assert not list((storage.root / "blocks").glob("*/*"))


def test_a_put_racing_garbage_collection_fails_cleanly(storage):
    from cxmpute.errors import Conflict

    data = random.Random(5).randbytes(20 * 1024 * 1024)
    first = storage.put_bytes(data).file
    calls = []

    def collect_midway(_n: int) -> None:
        calls.append(1)
        if len(calls) == 40:  # after the first blocks were found already stored
            storage.delete(first.cid)

    with pytest.raises(Conflict) as exc:
        storage.put_bytes(data + b"more", progress=collect_midway)
    assert exc.value.status_code == 409
    assert storage.ls() == []  # nothing half-recorded
    again = storage.put_bytes(data + b"more").file
    assert storage.get_bytes(again.cid) == data + b"more"
