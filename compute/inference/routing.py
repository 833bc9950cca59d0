"""Where a gateway request goes, and the lease that pays for it.

A request
1. uses the caller's dedicated deployment of that model, if they rent one (an active hourly or monthly
   inference lease for the model: already paid, so nothing more is billed);
2. otherwise asks the market for an inference provision serving the model within the caller's price range
   (``X-Cxmpute-Price-Min`` / ``X-Cxmpute-Price-Max`` headers, gwei per compute-unit-second; default max
   ``CXMPUTE_INFERENCE_PRICE_MAX_GWEI``), which opens a per-second lease with escrow.
When the caller's balance covers the lease, the request is sent to the provision the market offers while the
lease is being placed on exactly that provision (``provision_id``), so the provider starts without waiting for
the lease's commit; a placement the database refuses withdraws the request before any byte of it is relayed
(the provider's work so far is unbilled: at most the placement's few milliseconds, and only for a caller whose
balance looked sufficient), and one that lands elsewhere sends it again there.
A matched provision with no registered server is cancelled unbilled (no slash: nothing was attempted). A failed
provider's lease ends as ``provider-lost`` and its server is suspended: a suspended server's provision is paused,
so matching skips it until its provider registers it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from compute.inference import endpoints
from compute.inference.models import Endpoint
from compute.inference.refusals import ProviderUnavailable
from compute.market import leases
from compute.market.demand import MatchRequest, PriceRange
from compute.market.matching import NoMatchError
from compute.models import Lease, LedgerAccount
from compute.network import Network
from compute.provisions import Resources
from cxmpute.db import get_engine
from cxmpute.errors import Conflict
from cxmpute.settings import Settings

# One request occupies the smallest slot a provision offers: one vCPU and a sliver of memory.
REQUEST_RESOURCES = Resources(cpu=1, memory_mb=1)


@dataclass
class Route:
    provision_id: str
    provider: str
    url: str
    api_key: str | None
    lease_id: str | None  # None: the caller's dedicated deployment, paid by its rental

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


# The caller's own deployments of a model (rentals already paid for), with their working servers, oldest first.
DEDICATED = (
    select(Lease.provision_id, Lease.provider, Endpoint.url, Endpoint.api_key)
    .join(Endpoint, Endpoint.provision_id == Lease.provision_id)
    .where(
        Lease.user == bindparam("user"),
        Lease.status == "active",
        Lease.kind == "inference",
        Lease.model == bindparam("model"),
        Lease.term != "seconds",
        Endpoint.suspended.is_(False),
    )
    .order_by(Lease.started_at)
)
SERVER = select(Endpoint.url, Endpoint.api_key, Endpoint.suspended).where(
    Endpoint.provision_id == bindparam("provision")
)


BALANCE = select(LedgerAccount.balance).where(LedgerAccount.kind == "user", LedgerAccount.owner == bindparam("owner"))


@dataclass
class Tentative:
    """A provision the market offers and its server: the request is sent there while its lease is placed
    (``req`` names the provision), so the provider starts on it without waiting for the lease's commit."""

    req: MatchRequest
    provision_id: str
    url: str
    api_key: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class ProviderFailed(Exception):
    """The provider failed (not the request): try another one."""


class Router:
    """Chooses each request's provider and places its lease; rents dedicated deployments."""

    def __init__(self, net: Network, settings: Settings):
        self.net = net
        self.settings = settings
        # Reads on the hot path are single statements on a pooled connection: an ORM session and the entities it
        # builds cost more CPU than the queries
        self._engine = get_engine(net.store.url)

    def _dedicated(self, user: str, model: str, tried: set[str]) -> Route | None:
        with self._engine.connect() as conn:
            rows = conn.execute(DEDICATED, {"user": user, "model": model}).all()
        for provision_id, provider, url, api_key in rows:
            if provision_id not in tried:
                return Route(provision_id, provider, url, api_key, None)
        return None

    def _endpoint(self, provision_id: str) -> tuple[str, str | None] | None:
        """Where a provision's working server listens (URL and key), if it has one."""
        with self._engine.connect() as conn:
            found = conn.execute(SERVER, {"provision": provision_id}).first()
        return None if found is None or found.suspended else (found.url, found.api_key)

    def _request(self, model: str, price: PriceRange) -> MatchRequest:
        return MatchRequest(
            kind="inference",
            model=model,
            resources=REQUEST_RESOURCES,
            price_min_gwei=price.price_min_gwei,
            price_max_gwei=price.price_max_gwei,
            duration_s=self.settings.inference_lease_s,
        )

    def choose(self, user: str, model: str, price: PriceRange, tried: set[str]) -> Route | Tentative:
        """Where the request goes: the caller's dedicated deployment; else, when the caller's balance covers the
        lease, the provision the market would place it on, named before the lease is written (the request is
        sent while the lease is placed); else the route of a lease placed first."""
        dedicated = self._dedicated(user, model, tried)
        if dedicated is not None:
            return dedicated
        req = self._request(model, price)
        quote = self.net.market.quote(req)
        if quote.matched and quote.provision_id not in tried and self._affords(user, quote.estimated_cost_gwei or 0):
            server = self._endpoint(quote.provision_id)
            if server is not None:
                pinned = req.model_copy(update={"provision_id": quote.provision_id})
                return Tentative(pinned, quote.provision_id, *server)
        return self._place(user, req)

    def _affords(self, user: str, amount: int) -> bool:
        with self._engine.connect() as conn:
            held = conn.execute(BALANCE, {"owner": user}).scalar()
        return held is not None and held >= amount

    def confirm(self, user: str, tentative: Tentative) -> Route:
        """The lease on the provision the request was sent to; when another caller took its capacity first, a
        lease placed anywhere (the caller sends the request again, there)."""
        try:
            lease = self.net.market.place(user, tentative.req)
        except NoMatchError:
            return self._place(user, tentative.req.model_copy(update={"provision_id": None}))
        return Route(lease.provision_id, lease.provider, tentative.url, tentative.api_key, lease.id)

    def _place(self, user: str, req: MatchRequest) -> Route:
        lease = self.net.market.place(user, req)
        server = self._endpoint(lease.provision_id)
        if server is None:
            # No server yet: cancelled unbilled and without slashing (nothing was attempted), and the
            # provision leaves matching until its provider registers a server.
            self.net.market.end(lease.id, "user-cancelled", None)
            endpoints.suspend(self.net, lease.provision_id)
            raise ProviderFailed(f"provision {lease.provision_id} has no working inference server")
        return Route(lease.provision_id, lease.provider, *server, lease.id)

    def deploy(self, user: str, model: str, term: str, price: PriceRange, auto_renew: bool) -> leases.LeaseOut:
        """Rent, for ``term``, all the free capacity of the best provision with a working server for ``model``."""
        probe = MatchRequest(
            kind="inference",
            model=model,
            resources=REQUEST_RESOURCES,
            term=term,
            price_min_gwei=price.price_min_gwei,
            price_max_gwei=price.price_max_gwei,
            auto_renew=auto_renew,
        )
        for _ in range(self.settings.inference_attempts):
            quote = self.net.market.quote(probe)
            if not quote.matched:
                raise Conflict(f"no provision serves {model!r} in that range: {quote.no_match.message}", field="model")
            if self._endpoint(quote.provision_id) is None:
                endpoints.suspend(self.net, quote.provision_id)
                continue
            slot = self.net.market.index.get(quote.provision_id)
            whole = Resources(
                cpu=slot.free_cpu,
                memory_mb=max(1, slot.free_memory_mb),
                gpu_count=slot.free_gpu,
                gpu_model=slot.gpu_model if slot.free_gpu else "",
                disk_gb=slot.free_disk_gb,
            )
            # priced exactly at this provision's ask, so the rental lands on it (or one just like it)
            return self.net.market.place(
                user,
                probe.model_copy(
                    update={"resources": whole, "price_min_gwei": slot.price, "price_max_gwei": slot.price}
                ),
            )
        raise ProviderUnavailable(f"no provision serving {model!r} has a working inference server", field="model")

    def fail(self, route: Route) -> None:
        """The provider failed the request: its lease ends as ``provider-lost``, unbilled, and its server is
        suspended."""
        if route.lease_id is not None:
            self.net.market.end(route.lease_id, "provider-lost", None)
        endpoints.suspend(self.net, route.provision_id)
