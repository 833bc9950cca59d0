"""The nodes blocks are placed on: registering them (the operator's word, or a provider's signed
registration once it has been checked), their status, and the open handle on each node's block store.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxmpute.errors import Conflict, NotFound
from stxrage.base import StorageBase
from stxrage.blockstore import (
    BlockMissing,
    BlockStore,
    QuotaExceeded,
    RemoteBlockStore,
    StoreUnavailable,
    open_store,
)
from stxrage.catalog import FragmentRow, NodeRow, insert_ignore, utcnow
from stxrage.errors import StorageError
from stxrage.models import NodeInfo, Replicas
from stxrage.registration import check_credential, check_resolves_safely, credential_matches, node_url

LOCAL_NODE = "local"
# Bounds on what a node may declare: its quota weighs its share of placement, so an absurd one is refused.
_MAX_CAPACITY = 2**50
_MAX_PRICE = 1e9


class NodeRegistry(StorageBase):
    def add_node(
        self,
        url: str,
        *,
        credential: str | None = None,
        capacity_bytes: int | None = None,
        price_per_gb_month: float | None = None,
        provider: str | None = None,
    ) -> NodeInfo:
        """Register a block store as the operator: a storage node (``http(s)://``, with the credential it
        requires) or a directory (``file://``). The platform assigns the id; the node declares quota and price."""
        return self._enroll(
            url.rstrip("/"),
            credential,
            provider=provider,
            capacity_bytes=capacity_bytes,
            price_per_gb_month=price_per_gb_month,
        )

    def register_node(self, url: str, *, credential: str, provider: str, issued_at: int) -> NodeInfo:
        """Register a provider's storage node once its signed registration has been checked: an http(s)
        address only, never one another account's node holds, and never an older registration again."""
        try:
            url = node_url(url)
            check_resolves_safely(url)
        except ValueError as exc:
            raise StorageError(str(exc), field="url", status_code=422) from None
        return self._enroll(url, credential, provider=provider, issued_at=issued_at, by_provider=True)

    def _enroll(
        self,
        url: str,
        credential: str | None,
        *,
        provider: str | None,
        issued_at: int = 0,
        by_provider: bool = False,
        capacity_bytes: int | None = None,
        price_per_gb_month: float | None = None,
    ) -> NodeInfo:
        if credential is not None:
            try:
                check_credential(credential)
            except ValueError as exc:
                raise StorageError(str(exc), field="credential", status_code=422) from None
        try:
            store = open_store(url, credential)
        except ValueError as exc:
            raise StorageError(str(exc), field="url") from None
        declared: tuple[int, float] = (100 * 1024**3, 0.0)
        if isinstance(store, RemoteBlockStore):
            if credential is None:
                raise StorageError(
                    "a storage node is registered with the credential it requires (its <dir>/node.token)",
                    field="credential",
                )
            declared = _declared(store, url)
        try:
            with self._session() as s:
                row = s.scalars(select(NodeRow).where(NodeRow.url == url)).first()
                if row is not None:
                    row = self._reenroll(s, row, credential, provider, issued_at, by_provider)
                if row is None:
                    row = NodeRow(
                        id=LOCAL_NODE if url == self._local_url() else uuid.uuid4().hex,
                        url=url,
                        audit_failures=0,
                        registered_ts=0,
                        status="active",
                    )
                    s.add(row)
                elif not by_provider:
                    row.status = "active"  # the operator's word brings a down or evicted node back
                row.capacity_bytes = capacity_bytes or declared[0]
                row.price_per_gb_month = declared[1] if price_per_gb_month is None else price_per_gb_month
                row.provider = provider if by_provider else provider or row.provider
                row.credential = credential
                row.registered_ts = max(row.registered_ts, issued_at)
                s.flush()
                info = self._node_info(row)
        except IntegrityError:
            raise Conflict(f"{url} was registered by another request meanwhile", field="url") from None
        with self._stores_lock:
            self._stores[info.id] = ((url, credential), store)
        return info

    def _reenroll(
        self, s: Session, row: NodeRow, credential: str | None, provider: str | None, issued_at: int, by_provider: bool
    ) -> NodeRow | None:
        """The node already registered at this address, to update; None once a retired one made way."""
        if (
            row.status == "evicted"
            and s.scalar(select(FragmentRow.idx).where(FragmentRow.node_id == row.id).limit(1)) is None
        ):
            # An evicted node that holds nothing any more frees its address for a new registration.
            s.delete(row)
            s.flush()
            return None
        if by_provider:
            if row.provider != provider or row.credential is None:
                raise Conflict(f"{row.url} is registered to another storage node", field="url")
            if issued_at <= row.registered_ts:
                raise StorageError(
                    "registration replayed: issued_at is not newer than the node's last registration",
                    field="issued_at",
                    status_code=401,
                )
        # A node registered without a credential (the local directory, or a node from before credentials)
        # takes the operator's; otherwise the credential is what tells one node from another at an address.
        same = (row.credential is None and not by_provider) or (
            row.credential is not None and credential is not None and credential_matches(credential, row.credential)
        )
        if not same:
            raise Conflict(
                f"{row.url} is node {row.id}, registered with another credential; remove {row.id} and repair first",
                field="url",
            )
        if row.status == "evicted" and by_provider:
            raise Conflict(f"node {row.id} at {row.url} was evicted", field="url")
        return row

    def remove_node(self, node_id: str) -> NodeInfo:
        """Take a node out of placement; its fragments count as lost and the next repair moves them."""
        with self._session() as s:
            row = s.get(NodeRow, node_id)
            if row is None:
                raise NotFound(f"no storage node {node_id!r}", field="node_id")
            row.status = "evicted"
            return self._node_info(row)

    def nodes(self, provider: str | None = None) -> list[NodeInfo]:
        """Every node, or those one provider registered."""
        query = select(NodeRow).order_by(NodeRow.created_at, NodeRow.id)
        if provider is not None:
            query = query.where(NodeRow.provider == provider)
        with self._session() as s:
            return [self._node_info(r) for r in s.scalars(query)]

    def check_nodes(self) -> list[NodeInfo]:
        """Ping every node: unreachable ones go down; returning ones drop blocks reassigned meanwhile."""
        self._forget_changed_stores()
        for node in self.nodes():
            if node.status == "evicted":
                continue
            store = self._store(node.id)
            try:
                store.usage()  # cheap liveness probe
                if node.status == "down":
                    # Swept while still marked down, so no put in flight can be targeting it.
                    with self._session() as s:
                        assigned = set(
                            s.scalars(select(FragmentRow.fragment_cid).where(FragmentRow.node_id == node.id))
                        )
                    for orphan in set(store.cids()) - assigned:
                        store.delete(orphan)
                    self._set_status(node.id, "active")
            except StoreUnavailable:
                self._set_status(node.id, "down")
        return self.nodes()

    def _set_status(self, node_id: str, status: str) -> None:
        with self._session() as s:
            s.execute(update(NodeRow).where(NodeRow.id == node_id).values(status=status))

    @staticmethod
    def _node_info(row: NodeRow) -> NodeInfo:
        return NodeInfo(
            id=row.id,
            url=row.url,
            capacity_bytes=row.capacity_bytes,
            price_per_gb_month=row.price_per_gb_month,
            provider=row.provider,
            status=row.status,
            audit_failures=row.audit_failures,
        )

    def _local_url(self) -> str:
        return f"file://{self.root / 'blocks'}"

    def _active_nodes(self) -> list[tuple[str, float]]:
        with self._session() as s:
            rows = list(s.execute(select(NodeRow.id, NodeRow.capacity_bytes, NodeRow.status)))
        if not rows:
            # The embedded default: the local directory is the one node (concurrent first puts may race here).
            with self._session() as s:
                insert_ignore(
                    s,
                    NodeRow,
                    [
                        {
                            "id": LOCAL_NODE,
                            "url": self._local_url(),
                            "capacity_bytes": 100 * 1024**3,
                            "price_per_gb_month": 0.0,
                            "status": "active",
                            "audit_failures": 0,
                            "created_at": utcnow(),
                        }
                    ],
                )
            return self._active_nodes()
        return [(node_id, float(capacity)) for node_id, capacity, status in rows if status == "active"]

    def _store(self, node_id: str) -> BlockStore:
        with self._stores_lock:
            cached = self._stores.get(node_id)
        if cached is not None:
            return cached[1]
        with self._session() as s:
            row = s.get(NodeRow, node_id)
            if row is None:
                raise NotFound(f"no storage node {node_id!r}", field="node_id")
            key = (row.url, row.credential)
        store = open_store(*key)
        with self._stores_lock:
            self._stores[node_id] = (key, store)
        return store

    def _forget_changed_stores(self) -> None:
        """Drop handles on nodes whose address or credential another process has registered anew since."""
        with self._session() as s:
            current = {
                node_id: (url, credential)
                for node_id, url, credential in s.execute(select(NodeRow.id, NodeRow.url, NodeRow.credential))
            }
        with self._stores_lock:
            for node_id in [n for n, (key, _) in self._stores.items() if current.get(n) != key]:
                del self._stores[node_id]

    def default_policy(self) -> Replicas:
        active = self._active_nodes()
        if len(active) == 1:
            return Replicas(copies=1)
        return Replicas(copies=min(self.settings.storage_replicas, len(active)))


def _declared(store: RemoteBlockStore, url: str) -> tuple[int, float]:
    """The quota and price a node declares, asked with its credential: only the node holding it answers."""
    try:
        facts = store.info()
    except (StoreUnavailable, BlockMissing, QuotaExceeded):
        raise StorageError(f"no storage node answered at {url} with that credential", field="url") from None
    capacity, price = facts.get("capacity_bytes"), facts.get("price_per_gb_month", 0.0)
    if (
        not isinstance(capacity, int)
        or isinstance(capacity, bool)
        or not 0 < capacity <= _MAX_CAPACITY
        or not isinstance(price, int | float)
        or isinstance(price, bool)
        or not math.isfinite(price)
        or not 0 <= price <= _MAX_PRICE
    ):
        raise StorageError(f"the storage node at {url} declares an impossible quota or price", field="url")
    return capacity, float(price)
