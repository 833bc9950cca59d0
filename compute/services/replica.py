"""The ``service`` job kind: a provider's worker runs one replica of a container service.

The image comes from the platform as the service's ``docker save`` tarball (kept in Stxrage by its CID) and
is loaded once per provider; its own tags are dropped while it is loaded, so a user's image can never take
the name of another image on the machine. The container runs confined like the container runtime's jobs —
``nobody``, read-only root, no capabilities, ``no-new-privileges``, the runtimes' seccomp policy, memory, CPU
and process limits — with no network at all, or, when its service asks for network, the engine's bridge
fenced to the public internet (:func:`compute.runtimes.network.fence_container`) before the service's own
code starts. Either way the host cannot route to it: the gateway reaches it through a relay on
``settings.provider_host`` that enters the container's network namespace (:mod:`compute.services.relay`).
The job reports to the platform every heartbeat interval (the address once the container answers HTTP, its
newest output) and stops when told to, when its lease term is nearly over, or — as a failure — when the
container exits.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from pydantic import BaseModel, Field

from compute.runtimes import seccomp
from compute.runtimes.image import ensure_image as runtime_image
from compute.runtimes.network import available as network_available
from compute.runtimes.network import fence_container
from compute.services.errors import ServiceError
from compute.services.image import manifest_entries
from compute.services.relay import Relay
from cxmpute.client import (
    AsyncPlatformClient,
    PlatformClient,
    PlatformError,
    PlatformUnreachable,
)
from cxmpute.http import async_client
from cxmpute.logging import get_logger
from cxmpute.settings import Settings, get_settings

log = get_logger(__name__)
NOBODY = "65534:65534"
REPOSITORY = "cxmpute-service"
START_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 200


class ReplicaJob(BaseModel):
    replica_id: str
    token: str = Field(..., description="The replica's capability for its reports and its image")
    service: str
    image: str = Field(..., description="CID of the image tarball")
    port: int
    env: dict[str, str]
    cpu: int
    memory_mb: int
    pids: int
    network: bool = Field(False, description="The replica may reach the public internet")
    run_s: float = Field(..., gt=0, description="How long this job may run before its lease term ends")
    dispatch: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        description="This dispatch of the replica "
        "slot: a job from an earlier one (given up by a restarted platform) is told to stop",
    )


def image_tag(cid: str) -> str:
    return f"{REPOSITORY}:{hashlib.sha256(cid.encode()).hexdigest()[:16]}"


def untagged(src: Path, dest: Path) -> None:
    """Copy a `docker save` tarball without its tags (``RepoTags`` and the legacy ``repositories`` file)."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin:
            if member.name == "repositories":
                continue
            if member.name == "manifest.json":
                manifest = manifest_entries(json.load(tin.extractfile(member)))
                for entry in manifest:
                    entry["RepoTags"] = None
                data = json.dumps(manifest).encode()
                member.size = len(data)
                tout.addfile(member, io.BytesIO(data))
                continue
            tout.addfile(member, tin.extractfile(member) if member.isfile() else None)


def ensure_image(engine, settings: Settings, job: ReplicaJob) -> str:
    """The replica's image on this engine, fetched from the platform and loaded the first time."""
    from docker.errors import ImageNotFound

    tag = image_tag(job.image)
    try:
        engine.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    scratch = settings.data_dir / "services"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        raw, clean = Path(tmp) / "image.tar", Path(tmp) / "untagged.tar"
        try:
            with (
                PlatformClient(anonymous=True, timeout=600.0, headers={"X-Replica-Token": job.token}) as api,
                open(raw, "wb") as f,
                api.stream("GET", f"/v1/services/replicas/{job.replica_id}/image") as resp,
            ):
                f.writelines(resp.iter_bytes())
        except PlatformError as exc:
            raise ServiceError(
                f"the platform refused the image: {exc.status_code} {exc.message[:200]}", field="image", status_code=502
            ) from None
        try:
            untagged(raw, clean)
        except (tarfile.TarError, ValueError, KeyError) as exc:
            raise ServiceError(f"the image is not a `docker save` tarball: {exc}", field="image") from None
        with open(clean, "rb") as f:
            loaded = engine.images.load(f)
    if not loaded:
        raise ServiceError("the image tarball holds no image", field="image")
    repository, name = tag.split(":")
    loaded[0].tag(repository, name)
    return tag


def _confined(job: ReplicaJob, owner: str, provider: str) -> dict[str, Any]:
    return {
        "detach": True,
        "user": NOBODY,
        "read_only": True,
        "cap_drop": ["ALL"],
        "ipc_mode": "private",
        "security_opt": ["no-new-privileges", f"seccomp={seccomp.docker_profile()}"],
        "ulimits": [{"Name": "core", "Soft": 0, "Hard": 0}],
        "labels": {
            "cxmpute.runtime": "service",
            "cxmpute.replica": job.replica_id,
            "cxmpute.owner": owner,
            "cxmpute.provider": provider,
        },
    }


def start_network(engine, job: ReplicaJob, owner: str, provider: str):
    """A granted replica's network namespace: held by a container of its own on the engine's bridge and
    fenced before the replica joins it, so the service's code never runs unfenced."""
    if why := network_available():
        raise ServiceError(f"this provider cannot grant replicas network: {why}", field="network", status_code=503)
    holder = engine.containers.run(
        runtime_image(engine),
        command=["/usr/bin/sleep", "infinity"],
        network_mode="bridge",
        mem_limit="16m",
        memswap_limit="16m",
        pids_limit=4,
        name=f"cxmpute-svc-net-{job.replica_id[:8]}-{uuid.uuid4().hex[:8]}",
        **_confined(job, owner, provider),
    )
    try:
        fence_container(holder)
    except BaseException:
        remove(holder)
        raise
    return holder


def start_container(engine, job: ReplicaJob, image: str, owner: str, provider: str, network_mode: str):
    env = {**job.env, "CXMPUTE_REPLICA": job.replica_id, "CXMPUTE_SERVICE": job.service, "PORT": str(job.port)}
    return engine.containers.run(
        image,
        mem_limit=f"{job.memory_mb}m",
        memswap_limit=f"{job.memory_mb}m",
        nano_cpus=int(job.cpu * 1e9),
        pids_limit=job.pids,
        tmpfs={"/tmp": "size=64m,mode=1777"},
        environment=env,
        network_mode=network_mode,
        name=f"cxmpute-svc-{job.replica_id[:8]}-{uuid.uuid4().hex[:8]}",
        **_confined(job, owner, provider),
    )


_running: set[str] = set()  # containers this worker process runs
_starting = asyncio.Lock()


def remove_orphans(engine, provider: str) -> None:
    """Remove this provider's service containers that no replica of this process runs: an earlier run of the
    worker left them when it died, and the platform has already given their jobs up."""
    for container in engine.containers.list(
        all=True, filters={"label": ["cxmpute.runtime=service", f"cxmpute.provider={provider}"]}, ignore_removed=True
    ):  # one removed meanwhile is no error
        if container.id not in _running:
            log.warning("removing container %s left by an earlier run of this worker", container.name)
            remove(container)


def namespace_pid(container) -> int:
    """A process of the container, whose network namespace the relay enters."""
    container.reload()
    pid = container.attrs["State"]["Pid"]
    if not pid:
        raise ServiceError(exited(container) or "the container is not running", field="image")
    return pid


def exited(container) -> str | None:
    """Why the container is no longer running, with its last output; None while it runs."""
    try:
        container.reload()
    except Exception:  # removed behind our back
        return "the container was removed"
    state = container.attrs["State"]
    if state.get("Running"):
        return None
    why = "it ran out of memory" if state.get("OOMKilled") else f"status {state.get('ExitCode')}"
    return f"the container exited ({why}): {tail(container, 20)[-1500:]}"


def tail(container, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace")
    except Exception:  # gone
        return ""


def remove(container) -> None:
    try:
        container.remove(force=True)
    except Exception:  # already gone
        pass


class Reporter:
    """The replica's reports to the platform; a platform that cannot be reached is retried next time."""

    def __init__(self, api: AsyncPlatformClient, job: ReplicaJob, provider: str):
        self.api, self.job, self.provider = api, job, provider
        self.sent_logs: str | None = None

    async def beat(self, state: str, host: str | None = None, host_port: int | None = None, logs: str = "") -> bool:
        logs = logs[-60_000:]
        try:
            answer = await self.api.post(
                f"/v1/services/replicas/{self.job.replica_id}/beat",
                json={
                    "provider": self.provider,
                    "dispatch": self.job.dispatch,
                    "state": state,
                    "host": host,
                    "host_port": host_port,
                    "logs": None if logs == self.sent_logs else logs,
                },
            )
        except PlatformUnreachable as exc:
            log.warning("replica %s could not report: %s", self.job.replica_id, exc.message)
            return True
        except PlatformError as exc:
            if exc.status_code in (403, 404):  # the replica was stopped, or this provider lost it
                return False
            log.warning("replica %s report refused: %s %s", self.job.replica_id, exc.status_code, exc.message[:200])
            return True
        self.sent_logs = logs
        return bool(answer["run"])


async def _answers(url: str) -> bool:
    try:
        async with async_client(timeout=2.0, follow_redirects=False) as http:
            await http.get(url)
        return True
    except httpx.HTTPError:
        return False


async def run_replica(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    """Run the replica until told to stop or its term is nearly over; a container that exits fails the job."""
    import docker

    job = ReplicaJob.model_validate(payload)
    settings = get_settings()
    # The platform accepts reports only from the provider its job runs on: this worker's own wallet.
    provider = Account.from_key(settings.wallet_key).address if settings.wallet_key else "local"
    started = time.monotonic()
    interval = settings.heartbeat_interval_s
    async with AsyncPlatformClient(anonymous=True, headers={"X-Replica-Token": job.token}) as api:
        reporter = Reporter(api, job, provider)
        if not await reporter.beat("starting"):
            return {"ran_s": 0.0, "ended": "stopped before it started"}
        engine = await asyncio.to_thread(docker.from_env, timeout=120)
        image = await asyncio.to_thread(ensure_image, engine, settings, job)
        host = settings.provider_host
        containers = []
        relay: Relay | None = None
        try:
            async with _starting:  # a container being started is not yet known as running: not an orphan
                await asyncio.to_thread(remove_orphans, engine, provider)
                if job.network:
                    containers.append(await asyncio.to_thread(start_network, engine, job, owner, provider))
                    _running.add(containers[-1].id)
                mode = f"container:{containers[0].id}" if containers else "none"
                container = await asyncio.to_thread(start_container, engine, job, image, owner, provider, mode)
                containers.append(container)
                _running.add(container.id)
            relay = Relay(await asyncio.to_thread(namespace_pid, containers[0]), job.port)
            host_port = await relay.start(host)
            ready_by = time.monotonic() + START_TIMEOUT_S
            while not await _answers(f"http://{host}:{host_port}/"):
                if why := await asyncio.to_thread(exited, container):
                    raise ServiceError(why, field="image")
                if time.monotonic() > ready_by:
                    raise ServiceError(
                        f"the container did not answer HTTP on port {job.port} within {START_TIMEOUT_S:.0f} s",
                        field="port",
                    )
                await asyncio.sleep(0.1)
            ended = "stopped"
            while await reporter.beat("ready", host, host_port, await asyncio.to_thread(tail, container)):
                if time.monotonic() - started > job.run_s:
                    ended = "term"
                    break
                await asyncio.sleep(interval)
                if why := await asyncio.to_thread(exited, container):
                    raise ServiceError(why, field="image")
        finally:
            if relay is not None:
                await relay.close()
            for each in containers:
                _running.discard(each.id)
                await asyncio.to_thread(remove, each)
    return {"ran_s": round(time.monotonic() - started, 3), "ended": ended, "host_port": host_port}
