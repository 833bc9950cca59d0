"""Group commit of placements: batches, their shared receipt signature, refusals inside a batch, lost races."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from sqlalchemy import func, select

from compute import provisions, receipts
from compute.errors import InsufficientFunds
from compute.ledger import Acct, balance, post, total
from compute.market import leases, placement
from compute.market.demand import MatchRequest
from compute.market.leases import lease_message
from compute.market.matching import Market, NoMatchError
from compute.models import Lease, LedgerTx, Provider, Provision, aware, utcnow
from compute.provisions import ProvisionSpec, Resources
from cxmpute.settings import get_settings

ONE_CORE = MatchRequest(kind="function", resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=100, duration_s=60)


def provider(store) -> str:
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


def user(store, gwei: int) -> str:
    address = Account.create().address
    with store.write() as s:
        post(
            s,
            key=f"dep-{address}",
            kind="deposit",
            entries=[(Acct("chain", "t"), -gwei), (Acct("user", address), gwei)],
        )
    return address


def offer(store, owner: str, price: int = 10, cpu: int = 16, kind: str = "function") -> str:
    return provisions.create(
        store, owner, ProvisionSpec(kind=kind, price_gwei=price, resources=Resources(cpu=cpu, memory_mb=cpu * 4096))
    ).id


def hold_first_batch(monkeypatch, market: Market, queued: int) -> None:
    """Keep the first batch's writer busy until ``queued`` more requests wait, so they form the next batch."""
    real = placement.sign_batch
    released = threading.Event()

    def held(*args, **kwargs):
        if not released.is_set():
            deadline = time.monotonic() + 10
            while len(market._placer._queue) < queued and time.monotonic() < deadline:
                time.sleep(0.002)
            released.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "sign_batch", held)


def place_together(market: Market, requests: list[tuple[str, MatchRequest]]) -> list:
    """Place every request from its own thread at once; each result is the lease or the error raised."""

    def one(item):
        try:
            return market.place(*item)
        except Exception as exc:  # the refusal is the outcome under test
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def assert_index_matches_database(market: Market, store) -> None:
    with store.read() as s:
        for row in s.scalars(select(Provision)):
            slot = market.index.get(row.id)
            assert slot is not None
            assert (slot.free_cpu, slot.free_memory_mb, slot.free_gpu, slot.free_disk_gb) == (
                row.free_cpu,
                row.free_memory_mb,
                row.free_gpu,
                row.free_disk_gb,
            )


@pytest.mark.parametrize(
    "primary, message",
    [
        (
            "Lease",
            {
                "lease": str(uuid.uuid4()),
                "user": Account.create().address,
                "provider": Account.create().address,
                "provision": str(uuid.uuid4()),
                "computeUnits": 3,
                "priceGwei": 100,
                "term": "hour",
                "durationS": 3600,
                "escrowGwei": 0,
                "renewal": 2,
            },
        ),
        (
            "ProviderRegistration",
            {
                "provider": Account.create().address,
                "name": "n",
                "region": "eu",
                "profileHash": "0x" + "ab" * 32,
                "issuedAt": 1_700_000_000,
            },
        ),
        ("Heartbeat", {"provider": Account.create().address, "timestamp": 1_700_000_000}),
        ("Usage", {"lease": "l", "key": "l:k", "seconds": 5, "amountGwei": 10, "feeGwei": 1}),
    ],
)
def test_the_direct_encoder_agrees_with_eth_account(primary, message):
    domain = receipts.Domain(chain_id=8453, verifying_contract=Account.create().address)
    typed = encode_typed_data(full_message=receipts._typed(domain, primary, message))
    assert receipts.struct_hash(primary, message) == bytes(typed.body)
    assert domain.separator() == bytes(typed.header)


def test_batch_receipts_verify_with_their_own_proof_only():
    domain = receipts.Domain(chain_id=8453, verifying_contract=Account.create().address)
    other = receipts.Domain(chain_id=1, verifying_contract=domain.verifying_contract)
    for size in (1, 2, 3, 5, 8, 13):
        messages = [
            {
                "lease": str(uuid.uuid4()),
                "user": Account.create().address,
                "provider": Account.create().address,
                "provision": "p",
                "computeUnits": i + 1,
                "priceGwei": 7,
                "term": "seconds",
                "durationS": 60,
                "escrowGwei": 420 * (i + 1),
                "renewal": 0,
            }
            for i in range(size)
        ]
        signed = receipts.sign_batch(domain, "Lease", messages)
        assert len({r.signature for r in signed}) == 1
        for i, (message, receipt) in enumerate(zip(messages, signed)):
            assert receipts.verify(domain, "Lease", message, receipt.signature, receipt.proof)
            assert not receipts.verify(other, "Lease", message, receipt.signature, receipt.proof)
            assert not receipts.verify(domain, "Lease", {**message, "escrowGwei": 1}, receipt.signature, receipt.proof)
            if size > 1:
                assert not receipts.verify(domain, "Lease", message, receipt.signature, signed[i - 1].proof)
    # A batch of one is the plain EIP-712 signature of its message.
    [alone] = receipts.sign_batch(domain, "Lease", messages[:1])
    assert alone.proof == [] and alone.signature == receipts.sign(domain, "Lease", messages[0])


def test_concurrent_placements_share_one_transaction_and_one_signature(net, monkeypatch):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    offer(store, p, cpu=16)
    users = [user(store, 10**9) for _ in range(8)]
    hold_first_batch(monkeypatch, market, queued=7)
    placed = place_together(market, [(u, ONE_CORE) for u in users])
    assert all(isinstance(lease, leases.LeaseOut) for lease in placed), placed
    batched = [lease for lease in placed if lease.receipt_proof]
    assert len(batched) == 7 and len({lease.signature for lease in batched}) == 1
    for lease in placed:
        assert receipts.verify(net.domain, "Lease", lease_message(lease), lease.signature, lease.receipt_proof)
        stored = leases.get(store, lease.id, lease.user)  # what the API shows
        times = {"started_at", "expires_at"}
        assert stored.model_dump(exclude=times) == lease.model_dump(exclude=times)
        assert [aware(getattr(stored, t)) for t in sorted(times)] == [getattr(lease, t) for t in sorted(times)]
        with store.read() as s:
            assert balance(s, Acct("escrow", lease.id)) == lease.escrow_gwei
            hold = s.scalar(select(LedgerTx).where(LedgerTx.idempotency_key == f"hold:{lease.id}"))
            assert hold.signature == lease.signature
    with store.read() as s:
        assert total(s) == 0
        assert s.scalar(select(func.count()).select_from(Lease)) == 8
    assert_index_matches_database(market, store)


def test_a_batch_refuses_what_its_user_cannot_pay_and_keeps_the_rest(net, monkeypatch):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    prov = offer(store, p, cpu=16)
    per_lease = 10 * 2 * 60  # price * CU * seconds
    poor, rich = user(store, per_lease), user(store, 10**9)
    hold_first_batch(monkeypatch, market, queued=3)
    outcomes = place_together(market, [(rich, ONE_CORE), (poor, ONE_CORE), (poor, ONE_CORE), (rich, ONE_CORE)])
    refused = [o for o in outcomes if isinstance(o, InsufficientFunds)]
    assert len(refused) == 1 and refused[0].field == "user_balance"
    opened = [o for o in outcomes if isinstance(o, leases.LeaseOut)]
    assert len(opened) == 3
    with store.read() as s:
        assert balance(s, Acct("user", poor)) == 0 and total(s) == 0
        assert s.get(Provision, prov).free_cpu == 16 - 3
    assert_index_matches_database(market, store)


def test_rentals_and_metered_leases_commit_in_one_batch(net, monkeypatch):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    offer(store, p, price=1, cpu=16)
    u = user(store, 10**9)
    hour = MatchRequest(kind="function", resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=1, term="hour")
    hold_first_batch(monkeypatch, market, queued=3)
    placed = place_together(market, [(u, ONE_CORE), (u, hour), (u, ONE_CORE), (u, hour)])
    rentals = [lease for lease in placed if lease.term == "hour"]
    assert len(rentals) == 2 and all(lease.paid_gwei == 2 * 3600 and lease.escrow_gwei == 0 for lease in rentals)
    fee = 2 * 3600 * get_settings().platform_fee_bps // 10_000
    with store.read() as s:
        assert balance(s, Acct("earnings", p)) == 2 * (2 * 3600 - fee)
        assert balance(s, Acct("fee", "platform")) == 2 * fee
        assert total(s) == 0
    for lease in placed:
        assert receipts.verify(net.domain, "Lease", lease_message(lease), lease.signature, lease.receipt_proof)


def test_a_renewed_rental_is_signed_alone(net, monkeypatch):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    offer(store, p, price=1, cpu=16)
    u = user(store, 10**9)
    hour = MatchRequest(kind="function", resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=1, term="hour")
    hold_first_batch(monkeypatch, market, queued=1)
    first, second = place_together(market, [(u, hour), (u, hour)])
    batched = first if first.receipt_proof else second
    renewed = leases.renew(store, net.domain, batched.id, u)
    assert renewed.renewals == 1 and renewed.receipt_proof == []
    assert receipts.verify(net.domain, "Lease", lease_message(renewed), renewed.signature)


def test_a_lost_race_is_retried_on_the_refreshed_index(net):
    store = net.store
    p = provider(store)
    cheap = offer(store, p, price=5, cpu=2)
    dear = offer(store, p, price=9, cpu=2)
    u = user(store, 10**9)
    ours, theirs = Market(store, net.domain), Market(store, net.domain)  # two processes' views
    whole = MatchRequest(kind="function", resources=Resources(cpu=2, memory_mb=1024), price_max_gwei=10, duration_s=60)
    ours.sync(force=True)
    assert theirs.place(u, whole).provision_id == cheap
    assert ours.index.get(cheap).free_cpu == 2  # stale: it proposes the taken provision first
    assert ours.place(u, whole).provision_id == dear
    assert_index_matches_database(ours, store)
    with pytest.raises(NoMatchError) as refused:
        ours.place(u, whole)
    assert refused.value.explanation.excluded == {"capacity": 2}


def test_a_lone_request_is_written_by_its_own_caller_at_once(net, monkeypatch):
    """No batch waits to fill and no other thread is woken: a lone caller commits its own placement."""
    store = net.store
    market = Market(store, net.domain)
    offer(store, provider(store), cpu=64)
    u = user(store, 10**9)
    writers: list[int] = []
    real = placement.write_leases

    def recorded(conn, accepted):
        writers.append(threading.get_ident())
        return real(conn, accepted)

    monkeypatch.setattr(placement, "write_leases", recorded)
    for _ in range(3):
        market.place(u, ONE_CORE)
    assert writers == [threading.get_ident()] * 3
    assert not market._placer._writing and not market._placer._queue


def test_a_quote_waits_out_a_placement_the_database_refuses(net, monkeypatch):
    """A placement holds its capacity in the index before the database answers; a quote taken meanwhile must not
    read that hold as "nothing free" when the database refuses the placement and gives the capacity back."""
    store = net.store
    market = Market(store, net.domain)
    prov = offer(store, provider(store), cpu=1)
    poor = user(store, 0)
    signing, release = threading.Event(), threading.Event()
    real = placement.sign_batch

    def held(*args, **kwargs):
        signing.set()
        assert release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "sign_batch", held)
    with ThreadPoolExecutor(2) as pool:
        doomed = pool.submit(market.place, poor, ONE_CORE)
        assert signing.wait(10)
        assert market.index.get(prov).free_cpu == 0  # held for the poor user's placement
        quoted = pool.submit(market.quote, ONE_CORE)
        time.sleep(0.2)
        assert not quoted.done()  # waiting for the placement in flight, not answering "no match"
        release.set()
        with pytest.raises(InsufficientFunds):
            doomed.result(10)
        quote = quoted.result(10)
    assert quote.matched and quote.provision_id == prov
    assert_index_matches_database(market, store)


def test_a_request_naming_a_provision_gets_that_one_or_is_told_why_not(net):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    cheap, dear = offer(store, p, price=5, cpu=1), offer(store, p, price=50, cpu=1)
    rich = user(store, 10**9)
    assert market.quote(ONE_CORE).provision_id == cheap
    pinned = ONE_CORE.model_copy(update={"provision_id": dear})
    assert market.quote(pinned).provision_id == dear
    assert market.place(rich, pinned).provision_id == dear
    refused = market.quote(pinned)  # its one core is leased now; the cheap one, still free, is not offered
    assert not refused.matched and refused.no_match.excluded == {"provision": 1, "capacity": 1}
    with pytest.raises(NoMatchError):
        market.place(rich, pinned)
    over_budget = ONE_CORE.model_copy(update={"provision_id": cheap, "price_max_gwei": 4})
    assert not market.quote(over_budget).matched
    assert_index_matches_database(market, store)
