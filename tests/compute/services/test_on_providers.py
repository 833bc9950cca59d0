"""A container service on real provider workers: served through the gateway by two replicas, kept answering
and brought back to two replicas when one provider dies, billed per second through leases, and stopped (its
leases ended, the rest of their escrow refunded) when deleted; dispatched afresh by a restarted platform."""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from compute.services.replica import REPOSITORY
from cxmpute.settings import reset_settings
from tests.support.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# The worker-pool tests' platform: the API and provider workers as real processes.
_spec = importlib.util.spec_from_file_location(
    "worker_pool_fixtures", Path(__file__).parents[1] / "worker" / "conftest.py"
)
_fixtures = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_fixtures)
pool_platform = _fixtures.pool_platform

PRICE = 2


def _if(value, ok):
    return value if ok(value) else None


def _provider(platform, name: str) -> str:
    _, key = platform.start_provider(name, price=PRICE, cpu=1, memory_mb=1024)
    return Account.from_key(key).address


def _cli(monkeypatch, platform, wallet, *args: str) -> str:
    from cxmpute.cli import app

    monkeypatch.setenv("CXMPUTE_WALLET_KEY", wallet.key.to_0x_hex())
    monkeypatch.setenv("CXMPUTE_API_URL", platform.url)
    reset_settings()
    try:
        result = CliRunner().invoke(app, ["services", *args], catch_exceptions=False)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert result.exit_code == 0, result.output
    return result.output


def _containers(engine, **labels) -> list:
    # Providers remove containers meanwhile: one gone between the listing and its inspection is no error.
    return engine.containers.list(
        all=True, filters={"label": [f"cxmpute.{k}={v}" for k, v in labels.items()]}, ignore_removed=True
    )


def _remove_containers(engine, owner: str) -> None:
    """What a failed test left behind; the providers may be removing some of them themselves."""
    from docker.errors import APIError

    for container in _containers(engine, owner=owner):
        try:
            container.remove(force=True)
        except APIError:  # already gone, or its removal is in progress
            pass


def test_a_service_is_served_by_replicas_on_providers_survives_a_lost_provider_and_bills_them(
    pool_platform, docker_engine, image_tarball, monkeypatch
):
    platform = pool_platform
    a, b = _provider(platform, "svc-a"), _provider(platform, "svc-b")
    wallet, auth = platform.user()
    try:
        with httpx.Client(base_url=platform.url, headers=auth, timeout=120) as http:
            for image in docker_engine.images.list(name=REPOSITORY):  # providers must fetch the tarball, load it
                for tag in (t for t in image.tags if t.startswith(f"{REPOSITORY}:")):
                    docker_engine.images.remove(tag)
            until(
                lambda: (
                    len(
                        httpx.get(
                            f"{platform.url}/v1/market/provisions", params={"kind": "container", "status": "active"}
                        ).json()
                    )
                    >= 2
                ),
                "two container provisions",
                platform,
            )
            # Each machine's container offer shares its capacity with its agent offer: never sold twice.
            offers = httpx.get(f"{platform.url}/v1/market/provisions", params={"status": "active", "limit": 500}).json()
            groups = {(o["provider"], o["kind"]): o["capacity_group"] for o in offers if o["provider"] in (a, b)}
            assert all(groups[(p, "container")] == groups[(p, "agent")] for p in (a, b)), groups
            out = _cli(
                monkeypatch,
                platform,
                wallet,
                "deploy",
                str(image_tarball),
                "--name",
                "echo",
                "--port",
                "8080",
                "--env",
                "GREETING=hello",
                "--memory-mb",
                "256",
                "--min",
                "2",
                "--max",
                "3",
                "--target",
                "1",
                "--max-price",
                str(PRICE + 3),
                "--public",
            )
            public_url = f"/v1/public/services/{wallet.address.lower()}/echo/"
            assert "deployed echo" in out and f"/v1/public/services/{wallet.address}/echo/" in out

            def live() -> list[dict]:
                return [r for r in http.get("/v1/services/echo").json()["replicas"] if r["live"]]

            replicas = until(lambda: _if(live(), lambda rs: len(rs) == 2), "two live replicas", platform, 90)
            assert {r["provider"] for r in replicas} == {a, b}
            ids = {r["id"] for r in replicas}

            answers = [http.get("/v1/services/echo/proxy/hello", params={"n": i}) for i in range(6)]
            assert all(r.status_code == 200 for r in answers), answers[0].text
            assert {r.json()["replica"] for r in answers} == ids  # both replicas answer
            assert answers[0].json()["greeting"] == "hello" and answers[0].json()["path"] == "/hello?n=0"
            echoed = http.post("/v1/services/echo/proxy/submit", content=b"payload")
            assert echoed.json()["body"] == "payload" and echoed.headers["x-cxmpute-replica"] in ids
            anyone = httpx.get(f"{platform.url}{public_url}hello", params={"n": 7}, timeout=60)  # no credentials
            assert anyone.status_code == 200 and anyone.json()["path"] == "/hello?n=7", anyone.text

            # Provider A dies with its container: the gateway keeps answering from B's replica.
            victim = next(r for r in replicas if r["provider"] == a)
            platform.kill(a)
            for container in _containers(docker_engine, provider=a):
                container.remove(force=True)
            for i in range(5):
                answer = http.get("/v1/services/echo/proxy/", params={"during": i})
                assert answer.status_code == 200, answer.text
            # A third provider gets the replica that was on A.
            c = _provider(platform, "svc-c")
            replicas = until(
                lambda: _if(live(), lambda rs: len(rs) == 2 and {r["provider"] for r in rs} == {b, c}),
                "a replacement replica on the new provider",
                platform,
                90,
            )
            assert {r["id"] for r in replicas} == ids
            assert {http.get("/v1/services/echo/proxy/").json()["replica"] for _ in range(6)} == ids
            lost = http.get(f"/v1/leases/{victim['lease_id']}").json()
            assert lost["status"] == "ended" and lost["end_reason"] == "provider-lost"
            assert lost["kind"] == "container" and lost["escrow_left_gwei"] == 0

            listed = _cli(monkeypatch, platform, wallet, "ls", "echo")
            assert all(r["id"] in listed for r in replicas) and listed.count("(live)") == 2
            assert "2/2" in _cli(monkeypatch, platform, wallet, "ls")
            assert "GET /?during=0 HTTP/1.1" in _cli(monkeypatch, platform, wallet, "logs", "echo")  # B served those

            # A container that exits is started again under a new job (its failed job's lease ends).
            crashed = next(r for r in replicas if r["provider"] == b)
            for container in _containers(docker_engine, replica=crashed["id"]):
                container.remove(force=True)
            replicas = until(
                lambda: _if(live(), lambda rs: len(rs) == 2 and all(r["lease_id"] != crashed["lease_id"] for r in rs)),
                "the crashed replica to start again",
                platform,
            )
            assert next(r for r in replicas if r["id"] == crashed["id"])["restarts"] >= 1
            assert http.get(f"/v1/leases/{crashed['lease_id']}").json()["status"] == "ended"

            # Three requests in flight at once, one per replica wanted: the autoscaler adds a third replica,
            # which waits for a provider with room (there is none) until the service goes.
            with ThreadPoolExecutor(3) as pool:
                slow = [pool.submit(http.get, "/v1/services/echo/proxy/sleep", params={"s": 3}) for _ in range(3)]
                until(
                    lambda: len(http.get("/v1/services/echo").json()["replicas"]) == 3, "a third replica", platform, 30
                )
                assert all(f.result().status_code == 200 for f in slow)
            assert len(live()) == 2

            # Deleting stops the replicas; each lease is metered for the seconds its replica ran and has ended by the
            # time `rm` returns, so their capacity is free for the next command.
            said = _cli(monkeypatch, platform, wallet, "rm", "echo")
            assert "deleted echo" in said and "stopped and their leases ended" in said, said
            leases = [http.get(f"/v1/leases/{r['lease_id']}").json() for r in replicas]
            assert all(lease["status"] == "ended" for lease in leases), leases
            for lease in leases:
                assert lease["end_reason"] == "completed" and lease["kind"] == "container"
                assert lease["metered_s"] >= 1 and lease["escrow_left_gwei"] == 0
                assert lease["paid_gwei"] == lease["metered_s"] * lease["price_gwei"] * lease["compute_units"]
                assert lease["paid_gwei"] < lease["escrow_gwei"]  # the rest went back to the user
            until(lambda: not any(_containers(docker_engine, replica=r) for r in ids), "the containers to go", platform)
            assert http.get("/v1/services/echo").status_code == 404
            assert http.get("/v1/services/echo/proxy/").status_code == 404
    finally:
        _remove_containers(docker_engine, wallet.address)


def test_a_restarted_platform_dispatches_its_replicas_again_and_the_old_containers_stop(
    pool_platform, docker_engine, image_tarball, monkeypatch
):
    """The API process is SIGKILLed and started again: it gives up the replica jobs its predecessor dispatched
    (their leases end, the escrow goes back) and dispatches the slots afresh. With one provider left the new
    job lands where the old one runs; the old one is told to stop, so one container serves the slot."""
    platform = pool_platform
    for address in list(platform.workers):  # earlier tests' providers
        platform.kill(address)
    provider = _provider(platform, "svc-r")
    until(
        lambda: any(
            o["provider"] == provider
            for o in httpx.get(
                f"{platform.url}/v1/market/provisions", params={"kind": "container", "status": "active"}
            ).json()
        ),
        "its container provision",
        platform,
    )
    wallet, auth = platform.user()
    try:
        with httpx.Client(base_url=platform.url, headers=auth, timeout=120) as http:
            _cli(
                monkeypatch,
                platform,
                wallet,
                "deploy",
                str(image_tarball),
                "--name",
                "again",
                "--port",
                "8080",
                "--memory-mb",
                "256",
                "--max-price",
                str(PRICE + 3),
            )

            def live() -> list[dict]:
                return [r for r in http.get("/v1/services/again").json()["replicas"] if r["live"]]

            def running() -> list:
                return [c for c in _containers(docker_engine, replica=before["id"]) if c.status == "running"]

            [before] = until(lambda: _if(live(), lambda rs: len(rs) == 1), "a live replica", platform, 90)
            assert before["provider"] == provider and len(running()) == 1, (before, running(), platform.logs())
            platform.crash_api()
            platform.start_api()
            [after] = until(
                lambda: _if(live(), lambda rs: len(rs) == 1 and rs[0]["lease_id"] != before["lease_id"]),
                "the replica under a new job",
                platform,
                120,
            )
            assert after["id"] == before["id"] and after["provider"] == provider, (after, platform.logs())
            old = http.get(f"/v1/leases/{before['lease_id']}").json()
            assert old["status"] == "ended" and old["escrow_left_gwei"] == 0, old
            until(lambda: len(running()) == 1, "the earlier dispatch's container to stop", platform, 60)
            answer = http.get("/v1/services/again/proxy/")
            assert answer.status_code == 200 and answer.headers["x-cxmpute-replica"] == before["id"], answer.text
            assert "deleted again" in _cli(monkeypatch, platform, wallet, "rm", "again")
            until(lambda: not running(), "the container to go", platform)
    finally:
        _remove_containers(docker_engine, wallet.address)


def test_a_provider_without_a_docker_engine_offers_no_container_provision(pool_platform):
    platform = pool_platform
    platform.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    try:
        address = _provider(platform, "no-docker")
    finally:
        del platform.env["DOCKER_HOST"]

    def offered(kind: str) -> list[dict]:
        found = httpx.get(f"{platform.url}/v1/market/provisions", params={"kind": kind, "status": "active"}).json()
        return [p for p in found if p["provider"] == address]

    # The worker starts taking work once it has published everything it offers.
    log = next(platform.home.glob("provider-no-docker-*/worker.log"))
    until(lambda: "serving provision" in log.read_text(), "the provider to join", platform)
    assert offered("agent") and offered("container") == []
