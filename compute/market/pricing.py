"""The pricing rule.

* A compute unit (CU) is one vCPU, each started 4 GiB of memory, or one eighth of a GPU:
  ``cu = cpu + ceil(memory_mb / 4096) + 8 * gpu_count``. Disk is not priced.
* The user pays the provider's ask (``price_gwei`` per CU-second) — never more than their maximum, and
  providers compete on ask because matching ranks by price first.
* Per-second leases hold ``ask * cu * duration`` in escrow at match time, pay each metered second from it and
  refund what is left when the lease ends. Rentals (hour, month = 30 days) are billed upfront per term.
* The platform keeps ``platform_fee_bps`` of every payment to a provider (rounded down).
"""

from __future__ import annotations

from cxmpute.settings import get_settings

TERM_SECONDS = {"hour": 3600, "month": 30 * 86400}
MiB_PER_CU = 4096
CU_PER_GPU = 8


def compute_units(cpu: int, memory_mb: int, gpu_count: int) -> int:
    return cpu + -(-memory_mb // MiB_PER_CU) + CU_PER_GPU * gpu_count


def cost(price_gwei: int, units: int, seconds: int) -> int:
    return price_gwei * units * seconds


def platform_fee(amount_gwei: int) -> int:
    return amount_gwei * get_settings().platform_fee_bps // 10_000
