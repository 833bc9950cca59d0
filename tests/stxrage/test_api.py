"""/v1/storage through FastAPI: in-process for the edge cases, and over real HTTP with uvicorn."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import httpx
import pytest
import uvicorn
from eth_account import Account
from fastapi.testclient import TestClient

from cxmpute.client import local_address
from cxmpute.ports import free_port
from cxmpute.settings import get_settings
from tests.support.signin import sign_in


@pytest.fixture(scope="module")
def app():
    from web.app import create_app

    return create_app()


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def server(app):
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(400):
        if srv.started:
            break
        time.sleep(0.025)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_put_get_stat_ls_and_ranges(client):
    data = os.urandom(2 * 1024 * 1024 + 3)
    resp = client.post("/v1/storage/files", params={"name": "blob.bin"}, content=data)
    assert resp.status_code == 201, resp.text
    cid = resp.json()["file"]["cid"]
    got = client.get(f"/v1/storage/files/{cid}")
    assert got.status_code == 200 and got.content == data
    assert got.headers["accept-ranges"] == "bytes" and got.headers["etag"] == f'"{cid}"'
    part = client.get(f"/v1/storage/files/{cid}", headers={"Range": "bytes=1000-1999999"})
    assert part.status_code == 206 and part.content == data[1000:2_000_000]
    assert part.headers["content-range"] == f"bytes 1000-1999999/{len(data)}"
    assert client.get(f"/v1/storage/files/{cid}", headers={"Range": "bytes=-10"}).content == data[-10:]
    assert client.get(f"/v1/storage/files/{cid}", headers={"Range": "bytes=2097150-"}).content == data[2097150:]
    stat = client.get(f"/v1/storage/files/{cid}/stat").json()
    assert stat["size"] == len(data) and stat["name"] == "blob.bin" and stat["owner"] == local_address()
    assert cid in {f["cid"] for f in client.get("/v1/storage/files").json()}


def test_empty_file_round_trips(client):
    resp = client.post("/v1/storage/files", content=b"")
    cid = resp.json()["file"]["cid"]
    got = client.get(f"/v1/storage/files/{cid}")
    assert got.status_code == 200 and got.content == b""


def test_pin_unpin_delete(client):
    cid = client.post("/v1/storage/files", content=os.urandom(100_000)).json()["file"]["cid"]
    assert client.post(f"/v1/storage/files/{cid}/unpin").json()["pinned"] is False
    assert client.post(f"/v1/storage/files/{cid}/pin").json()["pinned"] is True
    assert client.delete(f"/v1/storage/files/{cid}").status_code == 204
    assert client.get(f"/v1/storage/files/{cid}").status_code == 404


def test_bad_input_is_a_4xx_naming_the_field(client):
    cid = client.post("/v1/storage/files", content=b"abc").json()["file"]["cid"]
    resp = client.get("/v1/storage/files/not-a-cid")
    assert resp.status_code == 400 and resp.json()["field"] == "cid"
    resp = client.post("/v1/storage/files", params={"policy": "9/3"}, content=b"x")
    assert resp.status_code == 400 and resp.json()["field"] == "policy"
    resp = client.post("/v1/storage/files", params={"policy": "5"}, content=b"x")
    assert resp.status_code == 503 and resp.json()["field"] == "policy"  # one local node cannot hold 5 copies
    resp = client.get(f"/v1/storage/files/{cid}", headers={"Range": "bytes=10-20"})
    assert resp.status_code == 416 and resp.json()["field"] == "range"
    resp = client.get(f"/v1/storage/files/{cid}", headers={"Range": "bytes=0-1,5-6"})
    assert resp.status_code == 416
    resp = client.post("/v1/storage/files", params={"public": "true", "private": "true"}, content=b"x")
    assert resp.status_code == 400 and resp.json()["field"] == "public"
    registration = {"url": "ftp://x", "credential": "c" * 40, "issued_at": 0, "signature": "0x"}
    assert client.post("/v1/storage/nodes", json=registration).status_code == 401  # no wallet, no node
    resp = client.post("/v1/storage/nodes", json=registration, headers=_sign_in(client))
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "url"


def _sign_in(client: TestClient) -> dict[str, str]:
    return sign_in(client, Account.create(), get_settings().chain_id)


def test_signed_in_accounts_are_isolated(client):
    alice, mallory = _sign_in(client), _sign_in(client)
    data = os.urandom(300_000)
    resp = client.post("/v1/storage/files", params={"private": "true"}, content=data, headers=alice)
    cid = resp.json()["file"]["cid"]
    assert client.get(f"/v1/storage/files/{cid}", headers=alice).content == data
    assert client.get(f"/v1/storage/files/{cid}", headers=mallory).status_code == 404
    assert client.get(f"/v1/storage/files/{cid}/stat", headers=mallory).status_code == 404
    assert client.delete(f"/v1/storage/files/{cid}", headers=mallory).status_code == 404
    assert cid not in {f["cid"] for f in client.get("/v1/storage/files", headers=mallory).json()}
    plain = client.post("/v1/storage/files", content=data, headers=alice).json()["file"]
    assert plain["public"] is False and plain["owner"] != "local"
    assert client.get(f"/v1/storage/files/{plain['cid']}", headers=mallory).status_code == 404
    assert client.get(f"/v1/storage/files/{plain['cid']}/stat", headers=mallory).status_code == 404
    assert client.post(f"/v1/storage/files/{plain['cid']}/publish", headers=mallory).status_code == 404
    published = client.post(f"/v1/storage/files/{plain['cid']}/publish", headers=alice).json()
    assert published["public"] is True and published["owner"] == plain["owner"]
    assert client.get(f"/v1/storage/files/{plain['cid']}", headers=mallory).content == data
    seen = client.get(f"/v1/storage/files/{plain['cid']}/stat", headers=mallory).json()
    assert seen["owner"] is None and seen["size"] == len(data)  # the uploader stays unnamed
    assert client.delete(f"/v1/storage/files/{plain['cid']}", headers=mallory).status_code == 403
    assert client.post(f"/v1/storage/files/{plain['cid']}/unpublish", headers=mallory).status_code == 403
    assert client.post(f"/v1/storage/files/{cid}/publish", headers=alice).status_code == 400  # encrypted
    client.post(f"/v1/storage/files/{plain['cid']}/unpublish", headers=alice)
    assert client.get(f"/v1/storage/files/{plain['cid']}", headers=mallory).status_code == 404


def _stream_put(base: str, size: int, seed: bytes, **params) -> tuple[str, str]:
    """Upload ``size`` pseudo-random bytes as a streamed body; returns (cid, sha256 of what was sent)."""
    digest = hashlib.sha256()

    def body():
        rng = random.Random(seed)
        sent = 0
        while sent < size:
            piece = rng.randbytes(min(1024 * 1024, size - sent))
            digest.update(piece)
            sent += len(piece)
            yield piece

    with httpx.Client(timeout=600) as http:
        resp = http.post(f"{base}/v1/storage/files", params=params, content=body())
    assert resp.status_code == 201, resp.text
    return resp.json()["file"]["cid"], digest.hexdigest()


def _stream_get_digest(base: str, cid: str, headers: dict | None = None) -> tuple[int, str]:
    digest, total = hashlib.sha256(), 0
    with (
        httpx.Client(timeout=600) as http,
        http.stream("GET", f"{base}/v1/storage/files/{cid}", headers=headers or {}) as resp,
    ):
        assert resp.status_code in (200, 206)
        for part in resp.iter_bytes():
            digest.update(part)
            total += len(part)
    return total, digest.hexdigest()


def test_streaming_round_trip_over_real_http(server):
    size = 24 * 1024 * 1024 + 11
    cid, sent = _stream_put(server, size, b"http", private="true")
    assert _stream_get_digest(server, cid) == (size, sent)
    with httpx.Client() as http:
        whole = http.get(f"{server}/v1/storage/files/{cid}").content
        part = http.get(f"{server}/v1/storage/files/{cid}", headers={"Range": "bytes=12345678-20000000"})
    assert part.status_code == 206 and part.content == whole[12345678:20000001]


def test_files_of_a_directory_archive_are_served_by_path(client, tmp_path):
    from stxrage import open_storage

    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    weights = os.urandom(700_000)
    (src / "sub" / "weights.bin").write_bytes(weights)
    (src / "config.json").write_text('{"hidden": 8}')
    cid = open_storage().put_dir(src, owner=local_address()).file.cid
    listing = client.get(f"/v1/storage/files/{cid}/archive").json()
    assert {e["path"] for e in listing} == {"config.json", "sub/weights.bin"}
    assert client.get(f"/v1/storage/files/{cid}/archive/config.json").json() == {"hidden": 8}
    part = client.get(f"/v1/storage/files/{cid}/archive/sub/weights.bin", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == weights[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(weights)}"
    missing = client.get(f"/v1/storage/files/{cid}/archive/nope.bin")
    assert missing.status_code == 404 and missing.json()["field"] == "path"
    plain = client.post("/v1/storage/files", content=b"x").json()["file"]["cid"]
    assert client.get(f"/v1/storage/files/{plain}/archive").status_code == 400


def test_the_storage_api_is_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/v1/storage/files",
        "/v1/storage/files/{cid}",
        "/v1/storage/files/{cid}/stat",
        "/v1/storage/files/{cid}/pin",
        "/v1/storage/nodes",
        "/v1/storage/repair",
    ]:
        assert path in paths
