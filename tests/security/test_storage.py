"""Storage from outside: who may add a storage node, what a node may claim about itself, who may call a node,
and who may read a file. Everything goes over HTTP, to a real `cxmpute up` and to storage nodes on loopback."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from compute.receipts import Domain
from stxrage import cid as cids
from tests.support.storage_nodes import (
    HostileNode,
    StorageNode,
    StorageProvider,
    operator_headers,
    storage_node,
    storage_provider,
)
from tests.support.up import UpPlatform

STAKE_GWEI = 2 * 10**9  # above the platform's default minimum stake
ANY_CREDENTIAL = "cxn_" + "q" * 40


def post(platform: UpPlatform, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{platform.url}{path}", headers=headers or {}, timeout=60, **kwargs)


def get(platform: UpPlatform, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.get(f"{platform.url}{path}", headers=headers or {}, timeout=60, **kwargs)


def field_of(resp: httpx.Response) -> str | None:
    """The field a refusal names: a platform error's ``field``, or the first of a validation error's fields."""
    body = resp.json()
    return body.get("field") or next((e["field"] for e in body.get("errors", [])), None)


def nodes(platform: UpPlatform) -> list[dict]:
    resp = get(platform, "/v1/storage/nodes", operator_headers(platform))
    assert resp.status_code == 200, resp.text
    return resp.json()


def upload(platform: UpPlatform, auth: dict, data: bytes, **params) -> dict:
    resp = post(platform, "/v1/storage/files", auth, params=params, content=data)
    assert resp.status_code == 201, resp.text
    return resp.json()["file"]


@dataclass
class World:
    """The closed platform with a file stored before any node joined (so its local directory is a node), two
    staked providers, and the first provider's real storage node registered."""

    platform: UpPlatform
    alice: dict
    before: tuple[str, bytes]
    provider: StorageProvider
    rival: StorageProvider
    node: StorageNode
    node_id: str
    registration: dict
    root: Path
    servers: list = field(default_factory=list)

    def fresh_node(self, name: str) -> StorageNode:
        node = storage_node(self.root / name)
        self.servers.append(node.served)
        return node

    def hostile(self, **kwargs) -> HostileNode:
        node = HostileNode(**kwargs).start()
        self.servers.append(node.served)
        return node


@pytest.fixture(scope="module")
def world(closed_platform, tmp_path_factory) -> World:
    platform, root = closed_platform, tmp_path_factory.mktemp("storage-nodes")
    _, alice = platform.new_user()
    data = os.urandom(200_000)
    before = (upload(platform, alice, data)["cid"], data)
    provider = storage_provider(platform, stake_gwei=STAKE_GWEI)
    rival = storage_provider(platform, stake_gwei=STAKE_GWEI)
    node = storage_node(root / "node")
    registration = provider.registration(node.url, node.credential)
    resp = post(platform, "/v1/storage/nodes", provider.auth, json=registration)
    assert resp.status_code == 201, resp.text
    world = World(platform, alice, before, provider, rival, node, resp.json()["id"], registration, root, [node.served])
    yield world
    # Later suites store on this platform too: its nodes go before they stop answering, and with at most two
    # of them beside the local directory, every block stored meanwhile has a copy there as well.
    for n in nodes(platform):
        if n["provider"] in (provider.account.address, rival.account.address) and n["status"] != "evicted":
            assert (
                httpx.delete(
                    f"{platform.url}/v1/storage/nodes/{n['id']}", headers=platform.operator, timeout=30
                ).status_code
                == 200
            )
    for served in world.servers:
        served.stop()


def _domain(platform: UpPlatform) -> dict:
    return Domain(chain_id=platform.chain["chain_id"], verifying_contract=platform.chain["vault_address"]).as_eip712()


# ---- who may register a node ----------------------------------------------------------------------------------


def test_registering_a_node_needs_a_signed_in_provider_with_stake(platform, tmp_path):
    node = storage_node(tmp_path / "node")
    try:
        wallet, user = platform.new_user()
        unstaked = storage_provider(platform)
        own = StorageProvider(wallet, user, _domain(platform))
        body = own.registration(node.url, node.credential)
        assert post(platform, "/v1/storage/nodes", json=body).status_code == 401  # anonymous, even when allowed
        assert post(platform, "/v1/storage/nodes", operator_headers(platform), json=body).status_code == 401
        resp = post(platform, "/v1/storage/nodes", user, json=body)
        assert resp.status_code == 403 and field_of(resp) == "provider", resp.text
        resp = post(platform, "/v1/storage/nodes", unstaked.auth, json=unstaked.registration(node.url, node.credential))
        assert resp.status_code == 403 and field_of(resp) == "stake", resp.text
        assert node.url not in {n["url"] for n in nodes(platform)}
    finally:
        node.served.stop()


def test_an_api_key_without_the_provider_scope_registers_nothing(world):
    key = world.platform.api_key(world.provider.auth, ["storage"])
    fresh = world.fresh_node("scoped")
    resp = post(world.platform, "/v1/storage/nodes", key, json=world.provider.registration(fresh.url, fresh.credential))
    assert resp.status_code == 403 and field_of(resp) == "authorization"
    assert get(world.platform, "/v1/storage/nodes/mine", key).status_code == 403


# ---- what a node may claim -----------------------------------------------------------------------------------


def test_a_node_claiming_the_local_id_gets_an_id_of_its_own_and_replaces_nothing(world):
    before = {n["id"]: n for n in nodes(world.platform)}
    assert "local" in before and before["local"]["url"].startswith("file://")
    impostor = world.hostile()  # its /info says it is "local", run by someone else
    resp = post(
        world.platform,
        "/v1/storage/nodes",
        world.rival.auth,
        json=world.rival.registration(impostor.url, ANY_CREDENTIAL),
    )
    assert resp.status_code == 201, resp.text
    taken = resp.json()
    assert taken["id"] not in before and taken["provider"] == world.rival.account.address
    after = {n["id"]: n for n in nodes(world.platform)}
    assert after["local"] == before["local"] and after[world.node_id] == before[world.node_id]
    cid, data = world.before
    assert get(world.platform, f"/v1/storage/files/{cid}", world.alice).content == data
    fresh = os.urandom(150_000)
    stored = upload(world.platform, world.alice, fresh)
    assert get(world.platform, f"/v1/storage/files/{stored['cid']}", world.alice).content == fresh
    assert world.node.blocks()  # the provider's real node holds copies, placed with its credential
    # The platform presented the impostor its own credential only, never another node's.
    assert impostor.authorizations == {f"Bearer {ANY_CREDENTIAL}"}


def test_urls_other_than_a_nodes_http_address_are_refused_naming_url(world, tmp_path):
    target = tmp_path / "written-by-the-platform"
    port = world.node.served.port
    bad = [
        f"file://{target}",
        f"gopher://127.0.0.1:{port}/_PUT",
        f"ftp://127.0.0.1:{port}",
        "javascript:alert(1)",
        f"http://user:pw@127.0.0.1:{port}",
        f"http://127.0.0.1@evil.example:{port}",
        f"http://127.0.0.1:{port}/v1",
        f"http://127.0.0.1:{port}/?next=/",
        f"http://127.0.0.1:{port}#frag",
        "http://169.254.169.254",
        "http://[fe80::1]:8700",
        "http://[::ffff:169.254.169.254]",
        f"http://0.0.0.0:{port}",
        "http://[::]:8700",
        "http://0xa9fea9fe",
        "http://2852039166",
        "http://224.0.0.1:8700",
        f"http://127.0.0.1:{port} ",
        f"http://127.0.0.1:{port}\\@evil",
        "http://127.0.0.1:99999",
        "http://:8700",
        "http://",
    ]
    for url in bad:
        try:  # signed where the address can be signed at all, so only the address is at fault
            body = world.provider.registration(url, world.node.credential)
        except ValueError:
            body = {"url": url, "credential": world.node.credential, "issued_at": int(time.time()), "signature": "0x00"}
        resp = post(world.platform, "/v1/storage/nodes", world.provider.auth, json=body)
        assert resp.status_code == 422 and field_of(resp) == "url", (url, resp.status_code, resp.text)
    assert not target.exists()


def test_a_node_must_hold_the_credential_and_answer_like_a_node(world):
    fresh = world.fresh_node("unregistered")
    api, prefect = world.platform.url, world.platform.prefect_url.removesuffix("/api")
    redirecting = world.hostile(info="redirect", redirect_to=f"{fresh.url}/info")
    garbage = world.hostile(info="<html>not a storage node</html>")
    greedy = world.hostile(info={"capacity_bytes": 2**70, "used_bytes": 0, "price_per_gb_month": 0})
    bogus_price = world.hostile(info='{"capacity_bytes": 1000000, "used_bytes": 0, "price_per_gb_month": 1e999}')
    attempts = [
        (fresh.url, ANY_CREDENTIAL),  # a real node, another credential
        (api, ANY_CREDENTIAL),
        (prefect, ANY_CREDENTIAL),  # the platform's own services
        (redirecting.url, fresh.credential),
        (garbage.url, ANY_CREDENTIAL),
        (greedy.url, ANY_CREDENTIAL),
        (bogus_price.url, ANY_CREDENTIAL),
    ]
    for url, credential in attempts:
        resp = post(
            world.platform, "/v1/storage/nodes", world.provider.auth, json=world.provider.registration(url, credential)
        )
        assert resp.status_code == 400 and field_of(resp) == "url", (url, resp.status_code, resp.text)
    # Followed, the redirect would have reached a node that holds that credential: it was not.
    assert redirecting.authorizations == {f"Bearer {fresh.credential}"}
    registered = {n["url"] for n in nodes(world.platform)}
    assert not registered & {fresh.url, api, prefect, redirecting.url, garbage.url, greedy.url, bogus_price.url}


def test_credentials_of_the_wrong_shape_are_refused_naming_credential(world):
    fresh = world.fresh_node("shapes")
    for credential in ["", "short", "x" * 201, "has spaces in it and is long enough to pass", "é" * 40]:
        body = {"url": fresh.url, "credential": credential, "issued_at": int(time.time()), "signature": "0x00"}
        resp = post(world.platform, "/v1/storage/nodes", world.provider.auth, json=body)
        assert resp.status_code == 422 and field_of(resp) == "credential", (credential, resp.text)


# ---- the signature -------------------------------------------------------------------------------------------


def test_forged_replayed_and_stale_registrations_are_refused(world):
    fresh = world.fresh_node("forged")
    provider, now = world.provider, int(time.time())
    good = provider.registration(fresh.url, fresh.credential)
    other_node = world.fresh_node("other")
    attempts = {
        "signature": [
            provider.registration(fresh.url, fresh.credential, signer=world.rival.account),  # someone else's wallet
            provider.registration(fresh.url, fresh.credential, signer=Account.create()),
            {**good, "credential": other_node.credential},  # signed for another credential
            {**good, "url": other_node.url},  # signed for another address
            {**good, "issued_at": good["issued_at"] + 1},
            {**good, "signature": "0x1234"},
            {**good, "signature": "not hex"},
            {**good, "signature": "0x" + "00" * 65},
        ],
        "issued_at": [
            provider.registration(fresh.url, fresh.credential, issued_at=now - 3600),
            provider.registration(fresh.url, fresh.credential, issued_at=now + 3600),
            world.registration,  # the world's node registered with it already: a replay
        ],
    }
    for expected, bodies in attempts.items():
        for body in bodies:
            resp = post(world.platform, "/v1/storage/nodes", provider.auth, json=body)
            assert resp.status_code == 401 and field_of(resp) == expected, (body, resp.text)
    # The rival signs its own registration of the provider's node, even with the node's stolen credential.
    stolen = world.rival.registration(world.node.url, world.node.credential)
    resp = post(world.platform, "/v1/storage/nodes", world.rival.auth, json=stolen)
    assert resp.status_code == 409 and field_of(resp) == "url", resp.text
    # The provider itself cannot swap the node's credential for one the node does not hold.
    resp = post(
        world.platform, "/v1/storage/nodes", provider.auth, json=provider.registration(world.node.url, ANY_CREDENTIAL)
    )
    assert resp.status_code == 400 and field_of(resp) == "url"
    listed = {n["url"]: n for n in nodes(world.platform)}
    assert fresh.url not in listed and other_node.url not in listed
    assert (
        listed[world.node.url]["id"] == world.node_id and listed[world.node.url]["provider"] == provider.account.address
    )
    again = post(
        world.platform,
        "/v1/storage/nodes",
        provider.auth,
        json=provider.registration(world.node.url, world.node.credential, issued_at=now + 1),
    )
    assert again.status_code == 201 and again.json()["id"] == world.node_id  # a fresh one from its owner


# ---- the node's own API --------------------------------------------------------------------------------------


def test_a_storage_node_serves_no_block_route_without_its_credential(world):
    node = world.node
    held = sorted(node.blocks())
    assert held, "the node was given blocks by the platform"
    cid = held[0]
    junk = os.urandom(64)
    junk_cid = cids.cid_of(junk)
    routes = [
        ("GET", f"/blocks/{cid}", {}),
        ("HEAD", f"/blocks/{cid}", {}),
        ("DELETE", f"/blocks/{cid}", {}),
        ("PUT", f"/blocks/{junk_cid}", {"content": junk}),
        ("GET", "/blocks", {}),
        ("GET", "/info", {}),
        ("POST", f"/audit/{cid}", {"json": {"nonce": "ab" * 16}}),
        ("GET", "/openapi.json", {}),
        ("GET", "/docs", {}),
    ]
    other = world.fresh_node("neighbour").credential
    for headers in [
        {},
        {"Authorization": f"Bearer {other}"},
        {"Authorization": f"Bearer {ANY_CREDENTIAL}"},
        {"Authorization": node.credential},
        {"Authorization": f"Basic {node.credential}"},
        {"Authorization": f"Bearer {node.credential[:-1]}"},
        {"Authorization": f"Bearer {node.credential}0"},
        {"Authorization": f"Bearer {node.credential.upper()}"},
        {"Authorization": "Bearer"},
    ]:
        for method, path, kwargs in routes:
            resp = httpx.request(method, f"{node.url}{path}", headers=headers, timeout=10, **kwargs)
            expected = 401 if path.startswith(("/blocks", "/info", "/audit")) else 404  # no schema, no docs
            assert resp.status_code == expected, (headers, method, path, resp.status_code)
    assert sorted(node.blocks()) == held and junk_cid not in node.blocks()
    assert httpx.get(f"{node.url}/health", timeout=10).json() == {"status": "ok"}
    cid, data = world.before
    assert get(world.platform, f"/v1/storage/files/{cid}", world.alice).content == data


# ---- operator routes and listings ----------------------------------------------------------------------------


def test_node_listing_audit_repair_and_eviction_are_the_operators(platform):
    _, user = platform.new_user()
    key = platform.api_key(
        user,
        ["account", "market", "provider", "keys", "workflows", "agents", "storage", "secrets", "memory", "workloads"],
    )
    callers = [{}, user, key, {"Authorization": "Bearer cxo_" + "x" * 43}]
    calls = [
        ("GET", "/v1/storage/nodes"),
        ("POST", "/v1/storage/audit"),
        ("POST", "/v1/storage/repair"),
        ("DELETE", "/v1/storage/nodes/local"),
    ]
    for headers in callers:
        for method, path in calls:
            resp = httpx.request(method, f"{platform.url}{path}", headers=headers, timeout=60)
            assert resp.status_code in (401, 403), (headers, method, path, resp.status_code)
    op = operator_headers(platform)
    assert get(platform, "/v1/storage/nodes", op).status_code == 200
    assert post(platform, "/v1/storage/audit", op).status_code == 200
    assert post(platform, "/v1/storage/repair", op).status_code == 200
    missing = httpx.delete(f"{platform.url}/v1/storage/nodes/nope", headers=op, timeout=30)
    assert missing.status_code == 404 and field_of(missing) == "node_id"


def test_a_provider_sees_its_own_nodes_and_no_one_sees_a_credential(world):
    mine = get(world.platform, "/v1/storage/nodes/mine", world.provider.auth)
    assert mine.status_code == 200 and [n["id"] for n in mine.json()] == [world.node_id]
    theirs = get(world.platform, "/v1/storage/nodes/mine", world.rival.auth).json()
    assert world.node_id not in {n["id"] for n in theirs}
    assert get(world.platform, "/v1/storage/nodes/mine", world.alice).json() == []
    assert get(world.platform, "/v1/storage/nodes/mine").status_code == 401
    for resp in (mine, get(world.platform, "/v1/storage/nodes", operator_headers(world.platform))):
        assert world.node.credential not in resp.text and "credential" not in resp.text


# ---- files ---------------------------------------------------------------------------------------------------


def test_a_file_is_its_owners_until_published_and_stat_names_no_uploader(platform):
    alice_wallet, alice = platform.new_user()
    bob_wallet, bob = platform.new_user()
    data = os.urandom(120_000)
    stored = upload(platform, alice, data, name="ledger.csv")
    cid = stored["cid"]
    assert stored["public"] is False and stored["owner"] == alice_wallet.address
    strangers = [bob, {}] if platform.anonymous else [bob]
    for who in strangers:
        for path in (f"/v1/storage/files/{cid}", f"/v1/storage/files/{cid}/stat", f"/v1/storage/files/{cid}/archive"):
            assert get(platform, path, who).status_code == 404, (who, path)
        for path in (
            f"/v1/storage/files/{cid}/pin",
            f"/v1/storage/files/{cid}/publish",
            f"/v1/storage/files/{cid}/unpublish",
        ):
            assert post(platform, path, who).status_code == 404, (who, path)
        assert httpx.delete(f"{platform.url}/v1/storage/files/{cid}", headers=who, timeout=30).status_code == 404
    if not platform.anonymous:
        assert get(platform, f"/v1/storage/files/{cid}").status_code == 401
    # The same bytes stored by someone else are that account's own file: alice's name and address stay hers.
    copy = upload(platform, bob, data)
    assert copy["cid"] == cid and copy["owner"] == bob_wallet.address
    assert get(platform, f"/v1/storage/files/{cid}/stat", alice).json()["name"] == "ledger.csv"
    assert get(platform, f"/v1/storage/files/{cid}/stat", bob).json()["name"] is None
    assert httpx.delete(f"{platform.url}/v1/storage/files/{cid}", headers=bob, timeout=30).status_code == 204

    published = post(platform, f"/v1/storage/files/{cid}/publish", alice).json()
    assert published["public"] is True
    for who in strangers:
        assert get(platform, f"/v1/storage/files/{cid}", who).content == data
        seen = get(platform, f"/v1/storage/files/{cid}/stat", who)
        assert seen.json()["owner"] is None and alice_wallet.address.lower() not in seen.text.lower(), seen.text
    assert get(platform, f"/v1/storage/files/{cid}/stat", alice).json()["owner"] == alice_wallet.address
    assert post(platform, f"/v1/storage/files/{cid}/unpublish", bob).status_code == 403
    assert post(platform, f"/v1/storage/files/{cid}/unpublish", alice).json()["public"] is False
    assert get(platform, f"/v1/storage/files/{cid}", bob).status_code == 404

    sealed = upload(platform, alice, data, private="true")
    resp = post(platform, f"/v1/storage/files/{sealed['cid']}/publish", alice)
    assert resp.status_code == 400 and field_of(resp) == "cid"
    resp = post(platform, "/v1/storage/files", alice, params={"private": "true", "public": "true"}, content=b"x")
    assert resp.status_code == 400 and field_of(resp) == "public"
