"""The gateway's routing: each OpenAI-style request goes to a provider serving its model, paid per second.

For a request the gateway
1. uses the caller's dedicated deployment of that model, if they rent one (an active hourly or monthly
   inference lease for the model: already paid, so nothing more is billed);
2. otherwise asks the market for an inference provision serving the model within the caller's price range
   (``X-Cxmpute-Price-Min`` / ``X-Cxmpute-Price-Max`` headers, gwei per compute-unit-second; default max
   ``CXMPUTE_INFERENCE_PRICE_MAX_GWEI``), which opens a per-second lease with escrow;
3. forwards the request to that provision's registered server and relays the answer (streams as they come).
   When the caller's balance covers the lease, the request is sent to the provision the market offers while
   the lease is being placed on exactly that provision (``provision_id``), so the provider starts without
   waiting for the lease's commit; a placement the database refuses withdraws the request before any byte of it
   is relayed (the provider's work so far is unbilled: at most the placement's few milliseconds, and only for a
   caller whose balance looked sufficient), and one that lands elsewhere sends it again there;
4. on success meters the seconds used into the ledger (once, keyed by the request id), ends the lease and
   records the request, in one transaction shared with the requests settling at the same moment
   (:mod:`compute.inference.settlement`);
   on a connection error, a 5xx or a model the server does not have, ends the lease as ``provider-lost``
   without billing it, suspends that server and tries the next provider. A failure after streaming began
   ends the stream with an error event (nothing of it is billed) and the next request goes elsewhere.
   ``provider-lost`` slashes the provider's stake to the caller, as for any lease it fails, once per
   incident (:func:`compute.ledger.funds.slash`). A matched provision with no registered server is
   cancelled unbilled (no slash: nothing was attempted).
A suspended server's provision is paused, so matching skips it until its provider registers it again.
Every request is recorded with its tokens and seconds (``GET /v1/inference/requests``).

Refusals are :class:`GatewayError` instances carrying OpenAI's error ``code`` (and, for a provider's own refusal,
its ``type``), so the API answers them in OpenAI's terms: a model no provision publishes is 404
``model_not_found``; a price range below every ask is 400; a model published but not served now, or
every provider failing, is 503.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import anyio
import httpx
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select

from compute.inference import endpoints
from compute.inference.events import count, document, relayed, usage_of
from compute.inference.models import Endpoint, RequestRecord
from compute.inference.refusals import GatewayError, ModelNotFound, PriceOutOfRange, ProviderUnavailable
from compute.inference.settlement import settler
from compute.inference.upstream import abandon, post, provider_client, settled_with
from compute.market import leases
from compute.market.demand import MatchRequest, PriceRange
from compute.market.matching import NoMatchError
from compute.models import Lease, LedgerAccount, Provision, aware, utcnow
from compute.network import Network
from compute.provisions import Resources
from cxmpute.db import get_engine
from cxmpute.errors import Conflict
from cxmpute.logging import get_logger
from cxmpute.settings import Settings

log = get_logger(__name__)

# One request occupies the smallest slot a provision offers: one vCPU and a sliver of memory.
REQUEST_RESOURCES = Resources(cpu=1, memory_mb=1)


class ServedModel(BaseModel):
    """A model some working server of an active provision serves."""

    id: str
    created: int = Field(description="When a provision first published the model (Unix seconds)")
    price_gwei: int = Field(description="Lowest ask per compute-unit-second among the provisions serving it")
    providers: int = Field(description="Provisions serving it")


class RequestOut(BaseModel):
    id: str
    model: str
    operation: str
    lease_id: str | None
    provision_id: str | None
    provider: str | None
    status: str
    prompt_tokens: int
    completion_tokens: int
    seconds: int
    amount_gwei: int
    error: str | None
    created_at: datetime


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
class _Tentative:
    """A provision the market offers and its server: the request is sent there while its lease is placed
    (``req`` names the provision), so the provider starts on it without waiting for the lease's commit."""

    req: MatchRequest
    provision_id: str
    url: str
    api_key: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class _Failed(Exception):
    """The provider failed (not the request): try another one."""


class Gateway:
    def __init__(self, net: Network, settings: Settings):
        self.net = net
        self.settings = settings
        # Reads on the hot path are single statements on a pooled connection: an ORM session and the entities it
        # builds cost more CPU than the queries
        self._engine = get_engine(net.store.url)

    # ---- catalogue ---------------------------------------------------------------------------------

    def models(self) -> list[ServedModel]:
        served = endpoints.available_models(self.net)
        published = self._first_published(set(served))
        return [
            ServedModel(id=name, created=published[name], price_gwei=low, providers=count)
            for name, (low, count) in sorted(served.items())
        ]

    def model(self, name: str) -> ServedModel:
        found = next((m for m in self.models() if m.id == name), None)
        if found is None:
            raise ModelNotFound(f"The model {name!r} does not exist or no provider serves it now", field="model")
        return found

    def _first_published(self, names: set[str]) -> dict[str, int]:
        """When each model first appeared in an inference provision (any status, so it stays put while
        provisions come and go): the stable ``created`` of OpenAI's model object."""
        with self.net.store.read() as session:
            rows = session.execute(
                select(Provision.models, Provision.created_at).where(Provision.kind == "inference")
            ).all()
        first: dict[str, int] = {}
        for models, created in rows:
            for model in set(models) & names:
                stamp = int(aware(created).timestamp())
                first[model] = min(first.get(model, stamp), stamp)
        return first

    def _published(self, model: str) -> bool:
        """Whether a provision that is not retired lists ``model``, served now or not."""
        with self.net.store.read() as session:
            rows = session.scalars(
                select(Provision.models).where(Provision.kind == "inference", Provision.status != "retired")
            ).all()
        return any(model in models for models in rows)

    def _unmatched(self, model: str, exc: NoMatchError) -> GatewayError:
        """The refusal for a request nothing matched, in terms of what the caller can change."""
        if not self._published(model):
            return ModelNotFound(f"The model {model!r} does not exist: no provider publishes it", field="model")
        why = exc.explanation
        if why.lowest_matching_price_gwei is not None:
            field = "x-cxmpute-price-min" if why.excluded.get("price_below_min") else "x-cxmpute-price-max"
            return PriceOutOfRange(f"no provider serves {model!r} within your price range: {why.message}", field=field)
        return ProviderUnavailable(f"no provider can serve {model!r} now: {why.message}", field="model")

    # ---- routing -----------------------------------------------------------------------------------

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

    def _choose(self, user: str, model: str, price: PriceRange, tried: set[str]) -> Route | _Tentative:
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
                return _Tentative(pinned, quote.provision_id, *server)
        return self._place(user, req)

    def _affords(self, user: str, amount: int) -> bool:
        with self._engine.connect() as conn:
            held = conn.execute(BALANCE, {"owner": user}).scalar()
        return held is not None and held >= amount

    def _confirm(self, user: str, tentative: _Tentative) -> Route:
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
            raise _Failed(f"provision {lease.provision_id} has no working inference server")
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

    def _fail(self, route: Route) -> None:
        if route.lease_id is not None:
            self.net.market.end(route.lease_id, "provider-lost", None)
        endpoints.suspend(self.net, route.provision_id)

    def _settle(self, record: RequestRecord) -> None:
        """Bill the record's seconds (once per request), end its lease and write it: one shared commit."""
        settler(self.net).settle(record)

    def _record(self, record: RequestRecord) -> None:
        with self.net.store.write() as session:
            session.merge(record)

    # ---- forwarding --------------------------------------------------------------------------------

    async def forward(
        self, user: str, operation: str, path: str, body: dict, price: PriceRange
    ) -> tuple[httpx.Response, AsyncIterator[bytes] | bytes]:
        """Send ``body`` to a provider; returns the upstream response and its content (bytes), or an
        iterator over server-sent events for a stream."""
        model = body["model"]
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if body.get("stream"):  # the provider always reports usage at the end of a stream: it is what gets recorded
            body = {**body, "stream_options": {"include_usage": True}}
        record = RequestRecord(
            id=str(uuid.uuid4()),
            user=user,
            model=model,
            operation=operation,
            status="failed",
            prompt_tokens=0,
            completion_tokens=0,
            seconds=0,
            amount_gwei=0,
            created_at=utcnow(),
        )
        upstream, content = await self._attempts(user, path, body, price, record)
        if isinstance(content, bytes):
            return upstream, content
        return upstream, self._relay(upstream, content, record, wants_usage)

    async def _attempts(
        self, user: str, path: str, body: dict, price: PriceRange, record: RequestRecord
    ) -> tuple[httpx.Response, bytes | tuple[Route, float]]:
        """Try providers until one answers; a stream comes back unread, with its route and start time."""
        model = body["model"]
        http = provider_client()
        timeout = httpx.Timeout(self.settings.inference_timeout_s, connect=5.0)
        tried: set[str] = set()
        problems: list[str] = []
        for _ in range(self.settings.inference_attempts):
            sending: asyncio.Future[httpx.Response] | None = None
            try:
                choice = await anyio.to_thread.run_sync(self._choose, user, model, price, tried)
                if isinstance(choice, _Tentative):
                    sending = asyncio.ensure_future(http.send(post(http, choice, path, body, timeout), stream=True))
                    route = await settled_with(sending, anyio.to_thread.run_sync(self._confirm, user, choice))
                    if route.provision_id != choice.provision_id:  # placed elsewhere: the request goes there
                        await abandon(sending)
                        sending = None
                else:
                    route = choice
            except NoMatchError as exc:
                if problems:
                    break
                raise await anyio.to_thread.run_sync(self._unmatched, model, exc) from exc
            except _Failed as exc:
                problems.append(str(exc))
                continue
            tried.add(route.provision_id)
            record.lease_id, record.provision_id, record.provider = route.lease_id, route.provision_id, route.provider
            started = time.monotonic()
            try:
                if sending is None:
                    sending = asyncio.ensure_future(http.send(post(http, route, path, body, timeout), stream=True))
                upstream = await sending
                if upstream.status_code >= 500 or upstream.status_code == 404:
                    detail = (await upstream.aread()).decode(errors="replace")[:200]
                    await upstream.aclose()
                    raise _Failed(f"{upstream.status_code}: {detail}")
                if upstream.status_code >= 400 or not body.get("stream"):
                    content = await upstream.aread()
                    await upstream.aclose()
            except (httpx.HTTPError, _Failed) as exc:
                problems.append(f"provision {route.provision_id}: {exc}")
                log.warning("provider %s failed, trying another: %s", route.provider, exc)
                await anyio.to_thread.run_sync(self._fail, route)
                continue
            if upstream.status_code >= 400:  # the request's fault, found by the provider: not billed
                record.status, record.error = "rejected", content.decode(errors="replace")[:500]
                await anyio.to_thread.run_sync(self._settle, record)
                return upstream, content
            if not body.get("stream"):
                count(record, usage_of(document(content)))
                await self._finish(record, started)
                return upstream, content
            return upstream, (route, started)
        record.error = "; ".join(problems)[:500]
        await anyio.to_thread.run_sync(self._record, record)
        raise ProviderUnavailable(f"every provider tried for {model!r} failed: {'; '.join(problems)}", field="model")

    async def _finish(self, record: RequestRecord, started: float) -> None:
        record.seconds = max(1, math.ceil(time.monotonic() - started))
        record.status = "ok"
        await anyio.to_thread.run_sync(self._settle, record)

    async def _relay(
        self, upstream: httpx.Response, attempt: tuple[Route, float], record: RequestRecord, wants_usage: bool
    ) -> AsyncIterator[bytes]:
        route, started = attempt
        failed, done = False, False
        pending = b""
        try:
            # The events that arrived together go on together: a token's event is relayed as the bytes it came
            # in, with no decoding or re-encoding of its own, and one write for each read of the provider.
            async for chunk in upstream.aiter_bytes():
                pending += chunk
                if b"\r" in pending:
                    pending = pending.replace(b"\r\n", b"\n")
                *events, pending = pending.split(b"\n\n")
                out = []
                for event in events:
                    data = relayed(event, record, wants_usage)
                    if data is None:
                        continue
                    done = data == b"data: [DONE]"
                    out.append(data)
                if out:
                    yield b"\n\n".join(out) + b"\n\n"
            if not done:
                raise httpx.RemoteProtocolError("the stream ended before [DONE]")
        except httpx.HTTPError as exc:
            failed = True
            log.warning("provider %s failed mid-stream: %s", route.provider, exc)
            error = {
                "error": {
                    "message": f"the provider failed mid-stream ({type(exc).__name__}); nothing of this "
                    "request is billed — retry it",
                    "type": "provider_error",
                    "param": None,
                    "code": "provider_failed",
                }
            }
            yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            await upstream.aclose()
            with anyio.CancelScope(shield=True):
                if failed:
                    record.error = "provider failed mid-stream"
                    await anyio.to_thread.run_sync(self._fail, route)
                    await anyio.to_thread.run_sync(self._record, record)
                else:  # finished, or the caller hung up: the seconds used are billed
                    await self._finish(record, started)

    # ---- reading -----------------------------------------------------------------------------------

    def requests(self, user: str, limit: int) -> list[RequestOut]:
        with self.net.store.read() as session:
            rows = session.scalars(
                select(RequestRecord)
                .where(RequestRecord.user == user)
                .order_by(RequestRecord.created_at.desc())
                .limit(limit)
            ).all()
            return [RequestOut(**{f: getattr(r, f) for f in RequestOut.model_fields}) for r in rows]
