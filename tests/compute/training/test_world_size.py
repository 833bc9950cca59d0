"""A training job asking for more ranks than live providers can take is refused when it is submitted, naming
`world_size`, before anything is recorded, leased or billed: each rank runs on its own provider."""

from __future__ import annotations

from eth_account import Account
from sqlalchemy import func, select, update

from compute import provisions
from compute.ledger import Acct, post
from compute.models import Lease, Provider, Provision, utcnow
from compute.provisions import ProvisionSpec, Resources
from compute.training import coordinator
from compute.training.spec import TrainingIn
from cxmpute.client import local_address
from cxmpute.settings import get_settings

PRICE = 3
RANK = {"cpu": 2, "memory_mb": 1024}


def _provider(store) -> str:
    address = Account.create().address
    with store.write() as s:
        s.add(
            Provider(
                address=address,
                name="p",
                region="eu",
                profile={},
                benchmark_score=1.0,
                registered_at=utcnow(),
                last_heartbeat_ts=0,
                heartbeats=0,
                leases_completed=0,
                leases_failed=0,
                reputation=0.5,
            )
        )
        s.flush()
        post(
            s,
            key=f"stake-{address}",
            kind="stake",
            entries=[(Acct("chain", "t"), -(10**10)), (Acct("stake", address), 10**10)],
        )
    return address


def _offer(store, provider: str, price: int = PRICE, cpu: int = 4, kind: str = "agent") -> str:
    return provisions.create(
        store, provider, ProvisionSpec(kind=kind, price_gwei=price, resources=Resources(cpu=cpu, memory_mb=8192))
    ).id


def _network(net) -> None:
    """Two providers a rank fits on (one offering twice), and four that do not count."""
    store = net.store
    first, second = _provider(store), _provider(store)
    _offer(store, first)
    _offer(store, first)  # a second offer of the same provider is not a second provider
    _offer(store, second)
    _offer(store, _provider(store), cpu=1)  # too small for a rank
    _offer(store, _provider(store), price=50)  # asks more than the job pays
    _offer(store, _provider(store), kind="container")  # sells other work
    down = _offer(store, _provider(store))
    with store.write() as s:  # its heartbeats lapsed
        s.execute(update(Provision).where(Provision.id == down).values(status="down"))
    net.market.sync(force=True)


def test_more_ranks_than_live_providers_are_refused_naming_world_size(client, net, dataset_csv):
    stored = client.post("/v1/storage/files", params={"name": "train.csv"}, content=dataset_csv)
    assert stored.status_code == 201, stored.text
    _network(net)

    job = {
        "dataset_cid": stored.json()["file"]["cid"],
        "world_size": 3,
        "steps": 10,
        "resources": RANK,
        "price_max_gwei": 5,
    }
    resp = client.post("/v1/training/jobs", json=job)
    assert resp.status_code == 409, resp.text
    assert resp.json()["field"] == "world_size"
    assert "needs 3 providers, but only 2 live providers" in resp.json()["detail"]
    assert client.get("/v1/training/jobs").json() == []
    with net.store.read() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0


def test_as_many_ranks_as_live_providers_pass_the_check(client, net, dataset_csv):
    stored = client.post("/v1/storage/files", params={"name": "train.csv"}, content=dataset_csv)
    _network(net)
    spec = TrainingIn(
        dataset_cid=stored.json()["file"]["cid"], world_size=2, steps=10, resources=RANK, price_max_gwei=5
    )
    coordinator.check(get_settings(), local_address(), spec)
