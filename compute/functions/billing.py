"""Per-millisecond billing of invocations run on providers.

An invocation travels as a ``function`` job whose lease the market meters in whole seconds (at least one),
which would charge a 3 ms invocation as 1000 ms. Once the job is accepted, the invocation is settled on
its milliseconds: ``ceil(ask * compute units * billed_ms / 1000)``, and the rest of what the lease took is
given back to the user — from the provider's earnings and the platform's fee in the proportions they were
paid — in one idempotent ledger transaction. The lease keeps its seconds record; the invocation records
what it finally cost.
"""

from __future__ import annotations

import math

from compute.errors import InsufficientFunds
from compute.ledger import Acct, post
from compute.market.pricing import platform_fee
from compute.models import Lease
from compute.store import Store
from cxmpute.logging import get_logger

log = get_logger(__name__)


def cost_of(price_gwei: int, compute_units: int, billed_ms: int) -> int:
    return math.ceil(price_gwei * compute_units * billed_ms / 1000)


def settle(store: Store, invocation_id: str, lease_id: str, charged_gwei: int, billed_ms: int) -> int:
    """Refund what the whole-seconds lease charged beyond the invocation's milliseconds; returns its cost."""
    with store.write() as session:
        lease = session.get(Lease, lease_id)
        cost = min(charged_gwei, cost_of(lease.price_gwei, lease.compute_units, billed_ms))
        back = charged_gwei - cost
        if back <= 0:
            return charged_gwei
        fee_back = platform_fee(charged_gwei) - platform_fee(cost)
        try:
            with session.begin_nested():
                post(
                    session,
                    key=f"function-ms:{invocation_id}",
                    kind="function-ms",
                    reference=lease_id,
                    memo=f"invocation {invocation_id}: {billed_ms} ms billed",
                    entries=[
                        (Acct("user", lease.user), back),
                        (Acct("earnings", lease.provider), -(back - fee_back)),
                        (Acct("fee", "platform"), -fee_back),
                    ],
                )
        except InsufficientFunds:  # the provider already withdrew its earnings: the seconds charge stands
            log.warning(
                "invocation %s kept its whole-seconds charge: provider earnings already withdrawn", invocation_id
            )
            return charged_gwei
        return cost
