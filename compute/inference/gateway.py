"""The gateway: each OpenAI-style request goes to a provider serving its model, paid per second.

For a request the gateway
1. has the router (:mod:`compute.inference.routing`) choose its provider: the caller's dedicated deployment of
   the model, else a provision the market matches within the caller's price range, on a per-second lease;
2. forwards the request to that provision's registered server and relays the answer (streams as they come);
3. on success meters the seconds used into the ledger (once, keyed by the request id), ends the lease and
   records the request, in one transaction shared with the requests settling at the same moment
   (:mod:`compute.inference.settlement`);
   on a connection error, a 5xx or a model the server does not have, ends the lease as ``provider-lost``
   without billing it, suspends that server and tries the next provider. A failure after streaming began
   ends the stream with an error event (nothing of it is billed) and the next request goes elsewhere.
   ``provider-lost`` slashes the provider's stake to the caller, as for any lease it fails, once per
   incident (:func:`compute.ledger.funds.slash`).
Every request is recorded with its tokens and seconds (``GET /v1/inference/requests``).

Refusals are :class:`GatewayError` instances carrying OpenAI's error ``code`` (and, for a provider's own refusal,
its ``type``), so the API answers them in OpenAI's terms (:mod:`compute.inference.catalogue` says which, for a
request nothing matched); every provider failing is 503.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import anyio
import httpx
from pydantic import BaseModel
from sqlalchemy import select

from compute.inference.catalogue import ServedModel, served_model, served_models, unmatched
from compute.inference.events import count, document, relayed, usage_of
from compute.inference.models import RequestRecord
from compute.inference.refusals import ProviderUnavailable
from compute.inference.routing import ProviderFailed, Route, Router, Tentative
from compute.inference.settlement import settler
from compute.inference.upstream import abandon, post, provider_client, settled_with
from compute.market.demand import PriceRange
from compute.market.matching import NoMatchError
from compute.models import utcnow
from cxmpute.logging import get_logger

log = get_logger(__name__)


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


class Gateway(Router):
    """The router's choices put to work: requests forwarded, answers relayed, seconds settled, and what the API
    reads of the catalogue and of the requests made."""

    # ---- catalogue ---------------------------------------------------------------------------------

    def models(self) -> list[ServedModel]:
        return served_models(self.net)

    def model(self, name: str) -> ServedModel:
        return served_model(self.net, name)

    # ---- settling ----------------------------------------------------------------------------------

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
                choice = await anyio.to_thread.run_sync(self.choose, user, model, price, tried)
                if isinstance(choice, Tentative):
                    sending = asyncio.ensure_future(http.send(post(http, choice, path, body, timeout), stream=True))
                    route = await settled_with(sending, anyio.to_thread.run_sync(self.confirm, user, choice))
                    if route.provision_id != choice.provision_id:  # placed elsewhere: the request goes there
                        await abandon(sending)
                        sending = None
                else:
                    route = choice
            except NoMatchError as exc:
                if problems:
                    break
                raise await anyio.to_thread.run_sync(unmatched, self.net, model, exc) from exc
            except ProviderFailed as exc:
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
                    raise ProviderFailed(f"{upstream.status_code}: {detail}")
                if upstream.status_code >= 400 or not body.get("stream"):
                    content = await upstream.aread()
                    await upstream.aclose()
            except (httpx.HTTPError, ProviderFailed) as exc:
                problems.append(f"provision {route.provision_id}: {exc}")
                log.warning("provider %s failed, trying another: %s", route.provider, exc)
                await anyio.to_thread.run_sync(self.fail, route)
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
                    await anyio.to_thread.run_sync(self.fail, route)
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
