"""Deterministic placement: weighted rendezvous (highest random weight) hashing.

Every client computes the same ranking of nodes for a key without coordination; a node's
weight (its free capacity) scales its share, and losing a node moves only the keys it held.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence


def _unit(key: str, node_id: str) -> float:
    h = int.from_bytes(hashlib.sha256(f"{node_id}\0{key}".encode()).digest()[:8], "big")
    return (h + 1) / (2**64 + 1)  # strictly inside (0, 1) so the log below is finite


def rank(key: str, nodes: Iterable[tuple[str, float]]) -> list[str]:
    """Node ids ordered best first for ``key``; ``nodes`` are (id, weight>0) pairs."""
    scored = [(-weight / math.log(_unit(key, node_id)), node_id) for node_id, weight in nodes if weight > 0]
    return [node_id for _, node_id in sorted(scored, reverse=True)]


def choose(key: str, nodes: Iterable[tuple[str, float]], count: int, exclude: Sequence[str] = ()) -> list[str]:
    return [n for n in rank(key, nodes) if n not in exclude][:count]
