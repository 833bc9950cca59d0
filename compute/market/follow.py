"""The market's index follows what sessions commit.

A session that writes a provision (created, patched, paused, retired, its capacity shifted by a lease's end) or a
provider's reputation marks it; once the session has committed and given its connection back, every market over
that database reloads what was marked, before the committing call returns. Callers never refresh the index by
hand. Placements and closings write through connections of the market's own and put their results in the index
themselves (:mod:`compute.market.placement`, :mod:`compute.market.closing`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Engine, event, inspect
from sqlalchemy.orm import Session

from compute.models import Provider, Provision

if TYPE_CHECKING:
    from compute.market.matching import Market

_KEY = "cxmpute.market.changed"
_COMMITTED = "cxmpute.market.committed"
_markets: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[Market]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def follow(engine: Engine, market: Market) -> None:
    """Have ``market`` reload what sessions on ``engine`` commit."""
    with _lock:
        _markets.setdefault(engine, weakref.WeakSet()).add(market)


def mark(session: Session, provisions: Iterable[str] = (), providers: Iterable[str] = ()) -> None:
    """Note writes the ORM does not see (bulk updates), for the markets to reload after the commit: ``provisions``
    by id, and every provision of ``providers``."""
    ids, addresses = session.info.setdefault(_KEY, (set(), set()))
    ids.update(provisions)
    addresses.update(providers)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: object) -> None:
    provisions, providers = [], []
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Provision):
            provisions.append(obj.id)
        elif isinstance(obj, Provider) and (obj in session.new or _reranked(obj)):
            providers.append(obj.address)
    if provisions or providers:
        mark(session, provisions, providers)


def _reranked(provider: Provider) -> bool:
    """Whether a provider's reputation moved as far as the index ranks it (two decimals): a heartbeat nudges it
    each time, and reloading every provision of the provider on each beat would cost more than it tells."""
    history = inspect(provider).attrs.reputation.history
    if not history.has_changes():
        return False
    before = history.deleted[0] if history.deleted else None
    after = history.added[0] if history.added else None
    return before is None or after is None or round(before, 2) != round(after, 2)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    changed = session.info.pop(_KEY, None)
    if changed:
        session.info[_COMMITTED] = changed


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, _transaction: object) -> None:
    # Reloaded here, once the transaction has given its connection back, not in after_commit: a writer that held
    # its connection while taking another for the reload could, with enough writers at once, empty the pool and
    # wait on itself.
    changed = session.info.pop(_COMMITTED, None)
    if not changed:
        return
    with _lock:
        markets = list(_markets.get(session.get_bind(), ()))
    ids, addresses = changed
    for market in markets:
        for address in addresses:
            market.refresh_provider(address)
        for provision_id in ids:
            market.refresh(provision_id)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_KEY, None)
