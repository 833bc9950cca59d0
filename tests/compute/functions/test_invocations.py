"""Invocations through the service: recorded with outcome, logs and metrics, sync and in the background,
and closed as lost when the process running them stopped."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import timedelta

from compute.functions import invocations, registry
from compute.functions.invocations import InvokeIn
from compute.functions.models import Invocation
from compute.functions.registry import DeployIn
from compute.models import utcnow
from cxmpute.db import session_scope
from cxmpute.settings import get_settings


def deployed(package_bytes: bytes, settings=None, **config) -> tuple[str, str]:
    owner, name = f"owner-{uuid.uuid4().hex[:8]}", "svc"
    registry.deploy(
        settings or get_settings(),
        owner,
        name,
        DeployIn(package_base64=base64.b64encode(package_bytes).decode(), **config),
    )
    return owner, name


async def test_invocations_are_recorded_with_their_outcome_and_metrics(package_bytes, platform_db_url):
    settings = get_settings().model_copy(update={"database_url": platform_db_url})
    owner, name = deployed(package_bytes, settings, memory_mb=128)
    first = await invocations.invoke(settings, owner, name, InvokeIn(event={"echo": 1}))
    failed = await invocations.invoke(settings, owner, name, InvokeIn(event={"fail": "nope"}))
    assert first.status == "ok" and first.cold and first.where == "local" and first.cost_gwei == 0
    assert first.billed_ms >= 1 and first.finished_at is not None
    assert failed.status == "error" and failed.error_status == 422 and "ValueError: nope" in failed.error
    assert failed.cold is False and failed.stdout == "event {'fail': 'nope'}\n"
    listed = invocations.list_for(settings, owner, name)
    assert [i.id for i in listed] == [failed.id, first.id]
    assert invocations.get(settings, owner, name, first.id) == first


async def test_a_background_invocation_is_queued_then_finished(package_bytes):
    settings = get_settings()
    owner, name = deployed(package_bytes)
    queued = await invocations.submit(settings, owner, name, InvokeIn(event={"echo": "bg"}))
    assert queued.status == "queued" and queued.mode == "async"
    for _ in range(600):
        view = invocations.get(settings, owner, name, queued.id)
        if view.done:
            break
        await asyncio.sleep(0.05)
    assert view.status == "ok" and view.result["echo"] == "bg"


def test_an_invocation_left_open_by_a_stopped_process_is_closed_as_lost(package_bytes):
    settings = get_settings()
    owner, name = deployed(package_bytes, timeout_s=5)
    version = registry.version(settings, owner, name)
    record = invocations._create(settings, owner, version, "async", "local")  # its process never ran it
    assert invocations.get(settings, owner, name, record.id).status == "queued"
    later = utcnow() + timedelta(seconds=5 + invocations.LOAD_TIMEOUT_S + invocations.LOST_AFTER_S + 1)
    lost = invocations.get(settings, owner, name, record.id, now=later)
    assert lost.status == "error" and "lost" in lost.error and lost.error_status == 502
    with session_scope(settings.resolved_database_url) as session:
        assert session.get(Invocation, record.id).status == "error"  # and it stays closed
