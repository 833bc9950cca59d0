"""Deploying a service: bad input is refused with 4xx naming the field, and nothing is registered."""

from __future__ import annotations

import io
import json
import tarfile

import pytest


@pytest.fixture
def seller(client, net, make_wallet, register_provider):
    """A provider offering container capacity at 5 gwei per compute-unit-second."""
    auth = register_provider(client, net, make_wallet())
    resp = client.post(
        "/v1/provisions",
        headers=auth,
        json={"kind": "container", "price_gwei": 5, "resources": {"cpu": 2, "memory_mb": 2048}},
    )
    assert resp.status_code == 201, resp.text


@pytest.fixture
def user(client, make_wallet, login):
    return login(client, make_wallet())


def _tarball(manifest: object = None, members: tuple[str, ...] = ("config.json", "layer/layer.tar")) -> bytes:
    """A tarball laid out as ``docker save`` writes one: a config, a layer and the manifest naming them."""
    if manifest is None:
        manifest = [{"Config": "config.json", "RepoTags": ["web:1"], "Layers": ["layer/layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in [
            *((m, b"{}" if m.endswith(".json") else b"\0" * 2048) for m in members),
            ("manifest.json", json.dumps(manifest).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _upload(client, auth, data: bytes, private: bool = False) -> str:
    resp = client.post(
        "/v1/storage/files", params={"name": "image.tar", "private": private}, content=data, headers=auth
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["file"]["cid"]


def _body(image: str, **overrides) -> dict:
    return {"name": "web", "image": image, "port": 8080, "price_max_gwei": 10, **overrides}


def _refused(resp, status: int, field: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    fields = [body.get("field")] + [e["field"] for e in body.get("errors", [])]
    assert field in fields, body
    return body["detail"]


def test_an_image_you_cannot_read_is_refused_naming_image(client, seller, user, make_wallet, login):
    detail = _refused(client.post("/v1/services", json=_body("bafynotacid"), headers=user), 404, "image")
    assert "upload" in detail
    someone_else = login(client, make_wallet())
    theirs = _upload(client, someone_else, _tarball(), private=True)
    _refused(client.post("/v1/services", json=_body(theirs), headers=user), 404, "image")


def test_a_file_that_is_not_an_image_tarball_is_refused_naming_image(client, seller, user):
    cid = _upload(client, user, b"just some text, not a tar archive" * 40)
    assert "not a `docker save` tarball" in _refused(
        client.post("/v1/services", json=_body(cid), headers=user), 422, "image"
    )


def test_a_tarball_that_holds_no_complete_image_is_refused_naming_image(client, seller, user):
    """Caught at deploy, before any replica is placed (and billed) only to fail loading it."""
    other_tar = io.BytesIO()
    with tarfile.open(fileobj=other_tar, mode="w") as tar:
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    for data, says in [
        (other_tar.getvalue(), "no manifest.json"),
        (_tarball(manifest=[]), "lists no image"),
        (_tarball(manifest={"Config": "config.json"}), "lists no image"),
        (_tarball(manifest=[{"Config": "config.json"}]), "no Config and Layers"),
        (_tarball(members=("config.json",)), "layer/layer.tar"),
        (_tarball()[:3000], "not a `docker save` tarball"),
    ]:
        detail = _refused(
            client.post("/v1/services", json=_body(_upload(client, user, data)), headers=user), 422, "image"
        )
        assert says in detail, (says, detail)
    assert client.get("/v1/services", headers=user).json() == []
    assert client.post("/v1/services", json=_body(_upload(client, user, _tarball())), headers=user).status_code == 201


def test_only_a_public_service_is_reachable_without_signing_in(client, seller, user, make_wallet, login):
    cid = _upload(client, user, _tarball())
    owner = client.post("/v1/services", json=_body(cid), headers=user).json()["owner"]
    assert client.post("/v1/services", json=_body(cid, name="site", public=True), headers=user).status_code == 201
    _refused(client.get(f"/v1/public/services/{owner}/web/"), 404, "name")  # private: as if there were none
    _refused(client.get(f"/v1/public/services/{owner}/nothing/"), 404, "name")
    # The public one is found (an address in any case); with no replica live yet the gateway says so.
    for who in (owner, owner.lower()):
        assert "no live replica" in _refused(client.get(f"/v1/public/services/{who}/site/x"), 503, "name")
    someone = login(client, make_wallet())
    _refused(client.get("/v1/services/site/proxy/x", headers=someone), 404, "name")  # not theirs to call privately


def test_a_bad_port_or_other_setting_is_refused_naming_its_field(client, seller, user):
    cid = _upload(client, user, _tarball())
    for overrides, field in [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "http"}, "port"),
        ({"name": "Not_A_Name"}, "name"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"memory_mb": 1}, "memory_mb"),
        ({"cpu": 1000}, "cpu"),
        ({"network": "everywhere"}, "network"),
    ]:
        _refused(client.post("/v1/services", json=_body(cid, **overrides), headers=user), 422, field)
    assert client.get("/v1/services", headers=user).json() == []


def test_a_price_range_no_provision_matches_is_refused_naming_the_price(client, seller, user):
    cid = _upload(client, user, _tarball())
    detail = _refused(
        client.post("/v1/services", json=_body(cid, price_max_gwei=4), headers=user), 409, "price_max_gwei"
    )
    assert "no provision matches" in detail
    _refused(
        client.post("/v1/services", json=_body(cid, price_min_gwei=20, price_max_gwei=10), headers=user),
        422,
        "price_max_gwei",
    )
    assert client.get("/v1/services", headers=user).json() == []


def test_unknown_services_and_replica_reports_are_refused(client, user):
    _refused(client.get("/v1/services/nothing", headers=user), 404, "name")
    _refused(client.delete("/v1/services/nothing", headers=user), 404, "name")
    _refused(client.get("/v1/services/nothing/proxy/", headers=user), 404, "name")
    _refused(
        client.post(
            "/v1/services/replicas/nope/beat",
            headers={"X-Replica-Token": "x"},
            json={"provider": "0xabc", "state": "starting"},
        ),
        403,
        "token",
    )
    _refused(client.get("/v1/services/replicas/nope/image", headers={"X-Replica-Token": "x"}), 403, "token")


def test_a_service_without_a_live_replica_answers_503_and_keeps_its_name(prefect_api, client, seller, user):
    cid = _upload(client, user, _tarball())
    created = client.post("/v1/services", json=_body(cid), headers=user)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active" and created.json()["owner"]
    _refused(client.post("/v1/services", json=_body(cid), headers=user), 409, "name")
    # The user has no funds, so no replica can be placed; the gateway says so instead of failing.
    assert "no live replica" in _refused(client.get("/v1/services/web/proxy/x", headers=user), 503, "name")
    assert [s["name"] for s in client.get("/v1/services", headers=user).json()] == ["web"]
    assert client.delete("/v1/services/web", headers=user).json()["status"] == "deleted"
    assert client.get("/v1/services", headers=user).json() == []
    assert client.post("/v1/services", json=_body(cid), headers=user).status_code == 201  # the name is free again
