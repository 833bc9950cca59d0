"""The ``train-rank`` job kind: a provider's worker runs one rank of a training job as a child process.

While the rank runs, the handler watches the generation's rank URL: once the platform revokes it (a peer
was lost, or the owner cancelled) the rank is stopped at once instead of waiting out its collective timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import httpx

from compute.errors import ComputeError
from compute.training.rank import RankJob, RankRun
from cxmpute.http import async_client
from cxmpute.settings import get_settings

WATCH_EVERY_S = 1.0


class RankStopped(ComputeError):
    status_code = 409


async def _revoked(http: httpx.AsyncClient, rank_url: str) -> bool:
    try:
        return (await http.get(rank_url)).status_code == 404
    except httpx.HTTPError:  # the platform unreachable is not a verdict; the collectives' timeout still holds
        return False


async def run_rank(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    job = RankJob.model_validate(payload)
    run = RankRun(**job.model_dump(), host=get_settings().provider_host)
    async with async_client(timeout=10) as http:
        if await _revoked(http, job.rank_url):
            raise RankStopped("the job's generation ended before this rank started", field="generation")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "compute.training.rank",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        outcome = asyncio.ensure_future(proc.communicate(run.model_dump_json().encode()))
        try:
            while not outcome.done():
                await asyncio.wait([outcome], timeout=WATCH_EVERY_S)
                if not outcome.done() and await _revoked(http, job.rank_url):
                    proc.kill()
                    await outcome
                    raise RankStopped(
                        "the job's generation ended (a peer was lost or the job was cancelled)", field="generation"
                    )
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await outcome
        stdout, stderr = outcome.result()
        # A peer killed at the generation's end breaks this rank's collectives, often before the next watch:
        # its failure is then the generation's end, not a fault of its own.
        if proc.returncode != 0 and await _revoked(http, job.rank_url):
            raise RankStopped(
                "the job's generation ended (a peer was lost or the job was cancelled)", field="generation"
            )
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"rank {job.rank} exited with {proc.returncode}: " + " | ".join(tail))
    return json.loads(stdout.decode().strip().splitlines()[-1])
