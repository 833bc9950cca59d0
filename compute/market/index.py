"""The in-memory provision index the matcher searches.

Provisions sit in buckets by (kind, GPU model); each bucket is a list of rank keys
``(price, -reputation, load, id)`` kept sorted, so the best provision for a request is the first entry
from ``bisect(price_min)`` that fits, and the walk stops at ``price_max``. Provisions with no free CPU
leave their bucket until capacity returns, so exhausted capacity never slows the walk. The database is
the source of truth: the index is rebuilt from it and every reservation is confirmed there.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC

from pydantic import BaseModel

from compute.market.demand import MatchRequest
from compute.models import Provision
from compute.provisions import Resources

Key = tuple[int, float, float, str]


@dataclass(slots=True)
class Slot:
    id: str
    provider: str
    kind: str
    cpu: int
    memory_mb: int
    gpu_count: int
    gpu_model: str
    disk_gb: int
    free_cpu: int
    free_memory_mb: int
    free_gpu: int
    free_disk_gb: int
    price: int
    reputation: float = 0.5
    models: frozenset[str] = field(default_factory=frozenset)
    images: frozenset[str] = field(default_factory=frozenset)
    region: str = "local"
    available_until: float = math.inf
    status: str = "active"
    group: str = ""  # capacity group (compute.provisions): slots of one group share their free capacity

    @classmethod
    def from_row(cls, row: Provision, reputation: float) -> Slot:
        until = row.available_until
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return cls(
            id=row.id,
            provider=row.provider,
            kind=row.kind,
            cpu=row.cpu,
            memory_mb=row.memory_mb,
            gpu_count=row.gpu_count,
            gpu_model=row.gpu_model,
            disk_gb=row.disk_gb,
            free_cpu=row.free_cpu,
            free_memory_mb=row.free_memory_mb,
            free_gpu=row.free_gpu,
            free_disk_gb=row.free_disk_gb,
            price=row.price_gwei,
            reputation=reputation,
            models=frozenset(row.models),
            images=frozenset(row.images),
            region=row.region,
            available_until=until.timestamp() if until else math.inf,
            status=row.status,
            group=row.capacity_group or row.id,
        )

    @property
    def key(self) -> Key:
        return (self.price, -round(self.reputation, 2), round(1 - self.free_cpu / self.cpu, 1), self.id)

    def fits(self, req: MatchRequest, end_ts: float) -> bool:
        r = req.resources
        return (
            self.free_cpu >= r.cpu
            and self.free_memory_mb >= r.memory_mb
            and self.free_gpu >= r.gpu_count
            and self.free_disk_gb >= r.disk_gb
            and (not r.gpu_model or self.gpu_model == r.gpu_model)
            and self.available_until >= end_ts
            and (not req.model or req.model in self.models)
            and (not req.image or not self.images or req.image in self.images)
            and (not req.region or self.region == req.region)
            and self.provider not in req.avoid_providers
            and (not req.provision_id or self.id == req.provision_id)
        )


class NoMatch(BaseModel):
    """Why nothing matched: how many provisions each constraint excluded (first failing one counts)."""

    considered: int
    excluded: dict[str, int]
    lowest_matching_price_gwei: int | None
    message: str

    @property
    def busy(self) -> bool:
        """Whether waiting may bring a match: every provision of the wanted kind that was turned down is busy
        or its provider down, so none is ruled out for good. Provisions of other kinds don't count."""
        turned_down = set(self.excluded) - {"kind"}
        return bool(turned_down) and turned_down <= {"capacity", "status"}


# Constraint order for explanations: the first one a provision fails is the one it is counted under.
_CHECKS: list[tuple[str, object]] = [
    ("kind", lambda s, q, end: s.kind == q.kind),
    ("provision", lambda s, q, end: not q.provision_id or s.id == q.provision_id),
    ("status", lambda s, q, end: s.status == "active"),
    ("avoided", lambda s, q, end: s.provider not in q.avoid_providers),
    ("availability", lambda s, q, end: s.available_until >= end),
    ("region", lambda s, q, end: not q.region or s.region == q.region),
    ("gpu_model", lambda s, q, end: not q.resources.gpu_model or s.gpu_model == q.resources.gpu_model),
    ("model", lambda s, q, end: not q.model or q.model in s.models),
    ("image", lambda s, q, end: not q.image or not s.images or q.image in s.images),
    (
        "resources",
        lambda s, q, end: (
            s.cpu >= q.resources.cpu
            and s.memory_mb >= q.resources.memory_mb
            and s.gpu_count >= q.resources.gpu_count
            and s.disk_gb >= q.resources.disk_gb
        ),
    ),
    (
        "capacity",
        lambda s, q, end: (
            s.free_cpu >= q.resources.cpu
            and s.free_memory_mb >= q.resources.memory_mb
            and s.free_gpu >= q.resources.gpu_count
            and s.free_disk_gb >= q.resources.disk_gb
        ),
    ),
]


class ProvisionIndex:
    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._keys: dict[str, Key] = {}
        self._buckets: dict[tuple[str, str], list[Key]] = {}
        self._models_by_kind: dict[str, set[str]] = {}
        self._groups: dict[str, set[str]] = {}
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, slot_id: str) -> Slot | None:
        return self._slots.get(slot_id)

    def upsert(self, slot: Slot) -> None:
        with self.lock:
            self._unlist(slot.id)
            self._slots[slot.id] = slot
            self._groups.setdefault(slot.group or slot.id, set()).add(slot.id)
            self._list(slot)

    def remove(self, slot_id: str) -> None:
        with self.lock:
            self._unlist(slot_id)
            slot = self._slots.pop(slot_id, None)
            if slot is not None:
                members = self._groups.get(slot.group or slot.id, set())
                members.discard(slot_id)
                if not members:
                    self._groups.pop(slot.group or slot.id, None)

    def reserve(self, slot_id: str, r: Resources) -> None:
        self._adjust(slot_id, r, -1)

    def release(self, slot_id: str, r: Resources) -> None:
        self._adjust(slot_id, r, 1)

    def group_of(self, slot_id: str) -> list[str]:
        """The provisions sharing ``slot_id``'s capacity, itself included, as far as the index knows them."""
        with self.lock:
            slot = self._slots.get(slot_id)
            if slot is None:
                return [slot_id]
            return sorted(self._groups.get(slot.group or slot.id, {slot_id}))

    def set_free(self, slot_id: str, cpu: int, memory_mb: int, gpu: int, disk_gb: int) -> None:
        """Set one provision's free capacity to what the database holds (its group's others are set apart)."""
        with self.lock:
            slot = self._slots.get(slot_id)
            if slot is None:
                return
            self._unlist(slot_id)
            slot.free_cpu, slot.free_memory_mb, slot.free_gpu, slot.free_disk_gb = cpu, memory_mb, gpu, disk_gb
            self._list(slot)

    def best(self, req: MatchRequest, now: float) -> Slot | None:
        """The best-ranked provision that satisfies every constraint, or None."""
        end = now + req.span_s
        lo, hi = req.price_min_gwei, req.price_max_gwei
        best: Slot | None = None
        best_key: Key | None = None
        with self.lock:
            if req.provision_id:  # one provision named: nothing to rank
                slot = self._slots.get(req.provision_id)
                listed = slot is not None and slot.id in self._keys and slot.kind == req.kind
                return slot if listed and lo <= slot.price <= hi and slot.fits(req, end) else None
            for bucket_id in self._relevant(req):
                keys = self._buckets.get(bucket_id)
                if not keys:
                    continue
                slots = self._slots
                for i in range(bisect.bisect_left(keys, (lo,)), len(keys)):
                    key = keys[i]
                    if key[0] > hi or (best_key is not None and key >= best_key):
                        break
                    slot = slots[key[3]]
                    if slot.fits(req, end):
                        best, best_key = slot, key
                        break
        return best

    def scan(self, req: MatchRequest, now: float) -> tuple[Slot | None, NoMatch]:
        """Linear scan of every provision: the reference answer, and the explanation when there is none."""
        end = now + req.span_s
        excluded = {name: 0 for name, _ in _CHECKS} | {"price_above_max": 0, "price_below_min": 0}
        lowest: int | None = None
        best: Slot | None = None
        with self.lock:
            slots = list(self._slots.values())
        for slot in slots:
            failed = next((name for name, check in _CHECKS if not check(slot, req, end)), None)
            if failed:
                excluded[failed] += 1
                continue
            lowest = slot.price if lowest is None else min(lowest, slot.price)
            if slot.price > req.price_max_gwei:
                excluded["price_above_max"] += 1
            elif slot.price < req.price_min_gwei:
                excluded["price_below_min"] += 1
            elif best is None or slot.key < best.key:
                best = slot
        excluded = {name: count for name, count in excluded.items() if count}
        return best, NoMatch(
            considered=len(slots),
            excluded=excluded,
            lowest_matching_price_gwei=lowest,
            message=_message(req, len(slots), excluded, lowest),
        )

    def _relevant(self, req: MatchRequest) -> list[tuple[str, str]]:
        r = req.resources
        if r.gpu_model:
            return [(req.kind, r.gpu_model)]
        models = self._models_by_kind.get(req.kind, ())
        return [(req.kind, m) for m in models if m or not r.gpu_count]

    def _adjust(self, slot_id: str, r: Resources, sign: int) -> None:
        with self.lock:
            slot = self._slots.get(slot_id)
            if slot is None:
                return
            for member in self._groups.get(slot.group or slot.id, {slot_id}):
                slot = self._slots[member]
                self._unlist(member)
                slot.free_cpu += sign * r.cpu
                slot.free_memory_mb += sign * r.memory_mb
                slot.free_gpu += sign * r.gpu_count
                slot.free_disk_gb += sign * r.disk_gb
                self._list(slot)

    def _list(self, slot: Slot) -> None:
        if slot.status != "active" or slot.free_cpu <= 0:
            return
        key = slot.key
        bucket = self._buckets.setdefault((slot.kind, slot.gpu_model), [])
        bisect.insort(bucket, key)
        self._keys[slot.id] = key
        self._models_by_kind.setdefault(slot.kind, set()).add(slot.gpu_model)

    def _unlist(self, slot_id: str) -> None:
        key = self._keys.pop(slot_id, None)
        if key is None:
            return
        slot = self._slots[slot_id]
        bucket = self._buckets[(slot.kind, slot.gpu_model)]
        i = bisect.bisect_left(bucket, key)
        if i < len(bucket) and bucket[i] == key:
            del bucket[i]


def _message(req: MatchRequest, considered: int, excluded: dict[str, int], lowest: int | None) -> str:
    if not considered:
        return "no provisions are published"
    parts = [f"{count} excluded by {name}" for name, count in sorted(excluded.items(), key=lambda kv: -kv[1])]
    text = f"of {considered} provisions, " + ", ".join(parts)
    if lowest is not None:
        text += (
            f"; the lowest ask satisfying every other constraint is {lowest} gwei/CU-s "
            f"(your range is {req.price_min_gwei}-{req.price_max_gwei})"
        )
    else:
        text += "; no provision satisfies the non-price constraints at any price"
    return text
