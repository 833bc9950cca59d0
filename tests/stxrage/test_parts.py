"""The building blocks on their own: placement, erasure coding, sealing, and the node's HTTP contract."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from stxrage import cid as cids
from stxrage import crypto, erasure, placement
from stxrage.chunker import BLOCK_LIMIT
from stxrage.node import NodeConfig, create_node_app
from stxrage.registration import CREDENTIAL_FILE


def test_rendezvous_is_deterministic_weighted_and_moves_only_lost_keys():
    nodes = [("a", 1.0), ("b", 1.0), ("c", 2.0), ("d", 4.0)]
    keys = [f"block-{i}" for i in range(4000)]
    first = {k: placement.rank(k, nodes)[0] for k in keys}
    assert first == {k: placement.rank(k, list(reversed(nodes)))[0] for k in keys}
    share = Counter(first.values())
    assert share["d"] > share["c"] > share["a"]
    assert 0.4 < share["d"] / len(keys) < 0.62  # weight 4 of 8
    without_b = {k: placement.rank(k, [n for n in nodes if n[0] != "b"])[0] for k in keys}
    moved = [k for k in keys if first[k] != without_b[k]]
    assert all(first[k] == "b" for k in moved)
    assert placement.choose("x", nodes, 2, exclude=["d"]) == [n for n in placement.rank("x", nodes) if n != "d"][:2]


@pytest.mark.parametrize(("k", "n"), [(1, 2), (2, 3), (3, 5), (4, 6)])
def test_any_k_fragments_rebuild_the_block(k, n):
    block = os.urandom(300_001)
    fragments = erasure.encode(block, k, n)
    assert len(fragments) == n and len({len(f) for f in fragments}) == 1
    for chosen in itertools.combinations(range(n), k):
        assert erasure.decode({i: fragments[i] for i in chosen}, k, n, len(block)) == block
    with pytest.raises(ValueError):
        erasure.decode({i: fragments[i] for i in range(k - 1)}, k, n, len(block))


def test_sealing_is_per_owner_and_tamper_evident():
    alice, bob = crypto.owner_key("s3cret", "alice"), crypto.owner_key("s3cret", "bob")
    sealed, digest = crypto.seal_chunk(alice, b"payload")
    assert crypto.seal_chunk(alice, b"payload")[0] == sealed  # convergent within an owner
    assert crypto.seal_chunk(bob, b"payload")[0] != sealed
    assert crypto.open_chunk(alice, digest, sealed) == b"payload"
    with pytest.raises(crypto.DecryptionError):
        crypto.open_chunk(bob, digest, sealed)
    with pytest.raises(crypto.DecryptionError):
        crypto.open_chunk(alice, digest, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    manifest = crypto.seal_manifest(alice, b"{}")
    assert crypto.seal_manifest(alice, b"{}") != manifest  # a fresh salt and nonce per manifest
    assert crypto.open_manifest(alice, manifest) == b"{}"
    with pytest.raises(crypto.DecryptionError):
        crypto.open_manifest(bob, manifest)


def test_the_node_accepts_only_what_matches_its_cid_and_fits(tmp_path):
    config = NodeConfig(root=tmp_path, quota_bytes=BLOCK_LIMIT + 10)
    node = TestClient(create_node_app(config), headers={"Authorization": f"Bearer {_credential(tmp_path)}"})
    data = os.urandom(1000)
    cid = cids.cid_of(data)
    assert node.put(f"/blocks/{cid}", content=data).status_code == 201
    assert node.get(f"/blocks/{cid}").content == data
    assert node.head(f"/blocks/{cid}").status_code == 200
    assert node.get("/blocks").json()["cids"] == [cid]
    nonce = os.urandom(16)
    answer = node.post(f"/audit/{cid}", json={"nonce": nonce.hex()}).json()["answer"]
    assert answer == hashlib.sha256(nonce + data).hexdigest()
    assert node.put(f"/blocks/{cid}", content=data + b"x").status_code == 400
    assert node.put("/blocks/not-a-cid", content=data).status_code == 400
    big = os.urandom(BLOCK_LIMIT + 1)
    assert node.put(f"/blocks/{cids.cid_of(big)}", content=big).status_code == 413
    fill = os.urandom(BLOCK_LIMIT)
    assert node.put(f"/blocks/{cids.cid_of(fill)}", content=fill).status_code == 507
    assert node.post(f"/audit/{cid}", json={"nonce": "zz"}).status_code == 422
    info = node.get("/info").json()
    assert info == {"capacity_bytes": BLOCK_LIMIT + 10, "used_bytes": 1000, "price_per_gb_month": 0.0}
    assert node.delete(f"/blocks/{cid}").status_code == 204
    assert node.get(f"/blocks/{cid}").status_code == 404


def _credential(root) -> str:
    return (root / CREDENTIAL_FILE).read_text().strip()


def test_the_node_serves_nothing_but_its_health_without_its_credential(tmp_path):
    node_app = create_node_app(NodeConfig(root=tmp_path))
    credential = _credential(tmp_path)
    assert (tmp_path / CREDENTIAL_FILE).stat().st_mode & 0o777 == 0o600
    assert credential.startswith("cxn_") and len(credential) >= 40
    data = os.urandom(100)
    cid = cids.cid_of(data)
    owner = TestClient(node_app, headers={"Authorization": f"Bearer {credential}"})
    assert owner.put(f"/blocks/{cid}", content=data).status_code == 201
    attempts = [
        ("PUT", f"/blocks/{cid}", {"content": data}),
        ("GET", f"/blocks/{cid}", {}),
        ("HEAD", f"/blocks/{cid}", {}),
        ("DELETE", f"/blocks/{cid}", {}),
        ("GET", "/blocks", {}),
        ("GET", "/info", {}),
        ("POST", f"/audit/{cid}", {"json": {"nonce": "00" * 16}}),
    ]
    for headers in [
        {},
        {"Authorization": "Bearer " + "x" * len(credential)},
        {"Authorization": credential},
        {"Authorization": f"Basic {credential}"},
        {"Authorization": f"Bearer {credential[:-1]}"},
        {"Authorization": f"Bearer {credential}x"},
        {"Authorization": "Bearer"},
    ]:
        stranger = TestClient(node_app, headers=headers)
        for method, path, kwargs in attempts:
            assert stranger.request(method, path, **kwargs).status_code == 401, (headers, method, path)
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert TestClient(node_app).get(path).status_code == 404
    assert TestClient(node_app).get("/health").json() == {"status": "ok"}
    assert owner.get(f"/blocks/{cid}").content == data  # nothing a stranger sent reached the block
    # The credential survives a restart, and one given in the configuration replaces it.
    assert _credential(tmp_path) == credential
    given = "cxn_" + "g" * 40
    configured = TestClient(create_node_app(NodeConfig(root=tmp_path, credential=given)))
    assert configured.get("/info", headers={"Authorization": f"Bearer {credential}"}).status_code == 401
    assert configured.get("/info", headers={"Authorization": f"Bearer {given}"}).status_code == 200
