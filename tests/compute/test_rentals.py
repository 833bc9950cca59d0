"""Long-term rentals: a fixed price for N hours or a month, prepaid, renewed or expired on a controlled
clock, the capacity held for the renter for the whole term."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from compute import provisions
from compute.errors import InsufficientFunds
from compute.ledger import Acct, balance, total
from compute.market import leases
from compute.market.demand import MatchRequest
from compute.market.matching import Market, NoMatchError
from compute.market.pricing import TERM_SECONDS, platform_fee
from compute.models import Lease, aware
from compute.provisions import ProvisionSpec, Resources

from .test_market import provider, user

WHOLE_MACHINE = Resources(cpu=4, memory_mb=8192)
UNITS = 4 + 2  # 4 vCPU + 8 GiB (two started 4 GiB)


@pytest.fixture
def market(net):
    return Market(net.store, net.domain)


@pytest.fixture
def machine(net):
    """A provider offering one container-sized machine at 1 gwei per CU-second."""
    p = provider(net.store)
    prov = provisions.create(
        net.store, p, ProvisionSpec(kind="container", price_gwei=1, resources=WHOLE_MACHINE, region="eu")
    ).id
    return p, prov


def rent(market, renter: str, hours: int | None = None, month: bool = False, auto_renew: bool = False):
    term = {"term": "month"} if month else {"term": "hour", "terms": hours}
    return market.place(
        renter, MatchRequest(kind="container", resources=WHOLE_MACHINE, price_max_gwei=1, auto_renew=auto_renew, **term)
    )


def state(net, lease_id: str) -> Lease:
    with net.store.read() as s:
        return s.get(Lease, lease_id)


def test_an_n_hour_rental_is_prepaid_held_for_the_renter_renewed_and_expired_on_time(net, market, machine):
    p, prov = machine
    six_hours = UNITS * 6 * 3600
    renter = user(net.store, 2 * six_hours + 7)
    lease = rent(market, renter, hours=6, auto_renew=True)
    assert lease.term == "hour" and lease.duration_s == 6 * 3600 and lease.paid_gwei == six_hours
    assert aware(lease.expires_at) - aware(lease.started_at) == timedelta(hours=6)
    with net.store.read() as s:
        assert balance(s, Acct("user", renter)) == six_hours + 7
        assert balance(s, Acct("earnings", p)) == six_hours - platform_fee(six_hours)
    assert provisions.get(net.store, prov).free.cpu == 0

    # Nobody else gets the machine during the term.
    other = user(net.store, 10**12)
    with pytest.raises(NoMatchError) as caught:
        rent(market, other, hours=1)
    assert "capacity" in caught.value.explanation.excluded

    expires = aware(lease.expires_at)
    assert leases.expire_due(net.store, net.domain, expires - timedelta(seconds=1)) == []  # not yet
    assert state(net, lease.id).renewals == 0
    assert leases.expire_due(net.store, net.domain, expires) == [lease.id]  # renewed on the dot
    row = state(net, lease.id)
    assert row.status == "active" and row.renewals == 1 and row.paid_gwei == 2 * six_hours
    assert aware(row.expires_at) == expires + timedelta(hours=6)
    with pytest.raises(NoMatchError):
        rent(market, other, hours=1)  # still held through the renewed term

    leases.expire_due(net.store, net.domain, expires + timedelta(hours=6))  # a third term cannot be paid
    row = state(net, lease.id)
    assert row.status == "ended" and row.end_reason == "out-of-funds"
    with net.store.read() as s:
        assert balance(s, Acct("user", renter)) == 7 and total(s) == 0
    assert provisions.get(net.store, prov).free.cpu == 4
    market.sync(force=True)
    assert rent(market, other, hours=1).user == other  # the capacity is free again


def test_a_month_rental_without_renewal_expires_at_its_end(net, market, machine):
    _, prov = machine
    month = UNITS * TERM_SECONDS["month"]
    renter = user(net.store, month)
    lease = rent(market, renter, month=True)
    assert lease.paid_gwei == month and aware(lease.expires_at) - aware(lease.started_at) == timedelta(days=30)
    end = aware(lease.expires_at)
    assert leases.expire_due(net.store, net.domain, end - timedelta(minutes=1)) == []
    assert leases.expire_due(net.store, net.domain, end + timedelta(seconds=1)) == [lease.id]
    row = state(net, lease.id)
    assert row.status == "ended" and row.end_reason == "expired" and row.renewals == 0
    with net.store.read() as s:
        assert balance(s, Acct("user", renter)) == 0  # a rental is a fixed price: nothing is refunded
    assert provisions.get(net.store, prov).free.cpu == 4


def test_a_renter_renews_by_hand_for_another_n_hours(net, market, machine):
    three_hours = UNITS * 3 * 3600
    renter = user(net.store, 2 * three_hours)
    lease = rent(market, renter, hours=3)
    renewed = leases.renew(net.store, net.domain, lease.id, renter)
    assert renewed.renewals == 1 and renewed.paid_gwei == 2 * three_hours
    assert aware(renewed.expires_at) == aware(lease.expires_at) + timedelta(hours=3)
    end = aware(renewed.expires_at)
    assert leases.expire_due(net.store, net.domain, end - timedelta(seconds=1)) == []
    assert leases.expire_due(net.store, net.domain, end) == [lease.id]
    assert state(net, lease.id).end_reason == "expired"


def test_a_rental_the_renter_cannot_prepay_is_refused(net, market, machine):
    _, prov = machine
    poor = user(net.store, UNITS * 3600 * 2 - 1)
    with pytest.raises(InsufficientFunds):
        rent(market, poor, hours=2)
    assert provisions.get(net.store, prov).free.cpu == 4  # nothing stays reserved


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"term": "seconds", "duration_s": 60, "terms": 2}, "only rentals"),
        ({"term": "month", "terms": 13}, "at most 12 months"),
        ({"term": "hour", "terms": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_rental_terms_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValidationError) as caught:
        MatchRequest(kind="container", price_max_gwei=1, **fields)
    assert caught.value.errors()[0]["loc"] == ("terms",) and message in str(caught.value)
