"""How many replicas a service wants, from the requests in flight through the gateway.

Scaling up is immediate: ``ceil(peak in-flight / target per replica)``, within ``[min, max]``. Scaling
down waits until that figure has stayed below the current count for ``scale_down_after_s``, then drops one
replica at a time, so a short lull between bursts does not throw away warm replicas.
"""

from __future__ import annotations

import math


def wanted(inflight: int, target_inflight: int, low: int, high: int) -> int:
    return min(high, max(low, math.ceil(inflight / target_inflight)))


class Autoscaler:
    """One per service; remembers since when load has been below the current replica count."""

    def __init__(self, scale_down_after_s: float):
        self.scale_down_after_s = scale_down_after_s
        self.low_since: float | None = None

    def desired(self, inflight: int, current: int, target_inflight: int, low: int, high: int, now: float) -> int:
        want = wanted(inflight, target_inflight, low, high)
        if want >= current or current > high:
            self.low_since = None
            return want
        if self.low_since is None:
            self.low_since = now
        if now - self.low_since >= self.scale_down_after_s:
            self.low_since = now
            return current - 1
        return current
