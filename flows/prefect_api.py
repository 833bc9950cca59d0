"""One way for synchronous code to reach the Prefect API: a client per thread, kept open.

Opening a Prefect client builds a TLS context (tens of milliseconds of CPU, even for plain HTTP), asks the
server for its version and opens a connection; the API reads runs on every request and the executors create
and run them, so each thread keeps one client context for the API it is pointed at — Prefect's own engine
finds it and uses it instead of opening one per flow run — and the flow's id is looked up once.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from typing import Any
from uuid import UUID

import httpx
import prefect.client.orchestration as prefect_clients
import prefect.results as prefect_results
from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import FlowCreate, FlowRunCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
from prefect.context import SyncClientContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.states import Pending, to_state_create

_local = threading.local()
_flow_ids: dict[tuple[str, str], UUID] = {}


class _SharedTLSContexts:
    """What Prefect's client module sees as ``ssl``: the same, but a context for the same CA file is built once.

    Prefect opens a new async client for every async task run (each runs under its own event loop), and each
    client builds a TLS context from the CA bundle — about 25 ms of CPU, more than the rest of a trivial
    node, and spent even when the API is plain HTTP. A context is only configured at creation and is safe to
    share between clients and threads. Prefect alters the one it builds for an unverified API
    (``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``), which it asks for without a CA file: that one is never shared.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: Any = None,
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        return _verified_context(purpose, cafile)


@functools.lru_cache(maxsize=8)
def _verified_context(purpose: ssl.Purpose, cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(purpose, cafile=cafile)


prefect_clients.ssl = _SharedTLSContexts()

STORAGE_TTL_S = 60.0
_storage_block_ids: dict[str, tuple[float, UUID | None]] = {}


def _server_default_storage_block_id() -> UUID | None:
    """The Prefect server's default result storage block, as Prefect's engine reads it at the start of every flow
    run, but asked once a minute per API: one request less per run. An operator who sets a default storage on the
    server sees it taken up within the minute. A failed read is not kept (Prefect then falls back to local
    storage for that run, as it would)."""
    url = _target()[0]
    now = time.monotonic()
    found = _storage_block_ids.get(url)
    if found is not None and now - found[0] < STORAGE_TTL_S:
        return found[1]
    try:
        block_id = (
            prefect_clients.get_client(sync_client=True)
            .read_server_default_result_storage()
            .default_result_storage_block_id
        )
    except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
        return None
    _storage_block_ids[url] = (now, block_id)
    return block_id


prefect_results._read_server_default_result_storage_block_id = _server_default_storage_block_id


def _target() -> tuple[str, str]:
    api = get_current_settings().api
    return str(api.url), api.auth_string.get_secret_value() if api.auth_string else ""


def client() -> SyncPrefectClient:
    """This thread's client for the Prefect API the process is pointed at now; Prefect's engine, called from
    this thread afterwards, uses it too."""
    target = _target()
    found: SyncClientContext | None = getattr(_local, "context", None)
    if found is None or _local.target != target:
        if found is not None:
            found.client.__exit__(None, None, None)
        found = SyncClientContext()
        found.__enter__()
        _local.context, _local.target = found, target
    if SyncClientContext.get() is not found:  # this thread now runs in another context (a new request's)
        SyncClientContext.__var__.set(found)
    return found.client


def create_flow_run(
    flow: Flow, name: str, parameters: dict[str, Any], tags: list[str], idempotency_key: str | None = None
) -> FlowRun:
    """A pending flow run of ``flow`` (one request: the flow's id is known after the first); the Prefect API
    answers a second create with the same ``idempotency_key`` with the first flow run."""
    api = client()
    key = (_target()[0], flow.name)
    flow_id = _flow_ids.get(key)
    if flow_id is None:
        flow_id = UUID(
            api.request("POST", "/flows/", json=FlowCreate(name=flow.name).model_dump(mode="json")).json()["id"]
        )
        _flow_ids[key] = flow_id
    body = FlowRunCreate(
        flow_id=flow_id,
        flow_version=flow.version,
        name=name,
        parameters=parameters,
        tags=tags,
        state=to_state_create(Pending()),
        idempotency_key=idempotency_key,
        empirical_policy=FlowRunPolicy(retries=flow.retries, retry_delay=int(flow.retry_delay_seconds or 0)),
    )
    answer = api.request("POST", "/flow_runs/", json=body.model_dump(mode="json", exclude_unset=True))
    return FlowRun.model_validate(answer.json())
