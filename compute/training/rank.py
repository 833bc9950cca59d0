"""One rank of a training job, as its own process (``python -m compute.training.rank`` reads a
:class:`RankJob` as JSON on stdin and prints its result as JSON on stdout).

The rank talks to the platform only through its generation's rank URL (a secret the platform rotates
for every generation): it fetches the dataset and the checkpoint to resume from, publishes or looks up
the rendezvous (rank 0 hosts the ``TCPStore`` on its provider's advertised host), reports losses and,
on rank 0, uploads checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

import httpx
from pydantic import BaseModel, Field

from compute.training.spec import TrainerConfig
from cxmpute.http import client

RENDEZVOUS_POLL_S = 0.1
JOINED = "cxmpute/joined"


class RankJob(BaseModel):
    training_id: str
    generation: int = Field(..., ge=1)
    rank: int = Field(..., ge=0)
    world_size: int = Field(..., ge=1)
    steps: int = Field(..., ge=1)
    checkpoint_every: int = Field(..., ge=1)
    trainer: TrainerConfig
    backend: str
    collective_timeout_s: float
    join_timeout_s: float = Field(600, gt=0, description="How long the ranks may take to all join the rendezvous")
    threads: int = Field(1, ge=1, description="Torch intra-op threads: the rank's leased vCPUs")
    rank_url: str = Field(..., description="This generation's rank URL on the platform API")
    resume_step: int = Field(0, ge=0, description="Steps in the checkpoint to resume from; 0: start afresh")


class RankRun(RankJob):
    host: str = Field(..., description="Where peers reach this provider (rank 0 serves the rendezvous there)")
    port: int = Field(0, ge=0, le=65535, description="The rendezvous port; 0: rank 0 picks one and publishes it")


def _rendezvous(http: httpx.Client, job: RankRun):
    """The rank's store, once every rank has joined it. Ranks may start minutes apart (one waits for a provision to
    free up), so joining may take up to the generation's time limit; collectives then get the shorter timeout."""
    import torch.distributed as dist

    timeout = timedelta(seconds=job.collective_timeout_s)
    deadline = time.monotonic() + job.join_timeout_s
    if job.port:  # a fixed rendezvous (Kubernetes): every rank knows it already
        store = dist.TCPStore(
            job.host, job.port, job.world_size, job.rank == 0, timeout=timeout, wait_for_workers=False
        )
    elif job.rank == 0:
        store = dist.TCPStore(job.host, 0, job.world_size, True, timeout=timeout, wait_for_workers=False)
        http.post("/rendezvous", json={"host": job.host, "port": store.port}).raise_for_status()
    else:
        while True:
            found = http.get("/rendezvous")
            found.raise_for_status()
            point = found.json()
            if point["port"]:
                store = dist.TCPStore(point["host"], point["port"], job.world_size, False, timeout=timeout)
                break
            if time.monotonic() > deadline:
                raise TimeoutError("rank 0 did not publish the rendezvous in time")
            time.sleep(RENDEZVOUS_POLL_S)
    store.add(JOINED, 1)
    while store.add(JOINED, 0) < job.world_size:
        if time.monotonic() > deadline:
            raise TimeoutError("not every rank joined the rendezvous in time")
        time.sleep(RENDEZVOUS_POLL_S)
    return store


def run(job: RankRun) -> dict:
    import torch
    import torch.distributed as dist

    from compute.training import trainer

    torch.set_num_threads(job.threads)
    with client(job.rank_url, timeout=max(60.0, job.collective_timeout_s)) as http:
        fetched = http.get("/dataset")
        fetched.raise_for_status()
        dataset = trainer.parse_dataset(fetched.content, job.trainer)
        resume = None
        if job.resume_step:
            got = http.get("/checkpoint")
            got.raise_for_status()
            resume = got.content
        store = _rendezvous(http, job)
        dist.init_process_group(
            job.backend,
            store=store,
            rank=job.rank,
            world_size=job.world_size,
            timeout=timedelta(seconds=job.collective_timeout_s),
        )
        device = torch.device("cuda", 0) if job.backend == "nccl" else None

        def losses(points: list[tuple[int, float]]) -> None:
            http.post("/losses", json={"rank": job.rank, "points": points}).raise_for_status()

        def checkpoint(step: int, data: bytes) -> None:
            http.post("/checkpoints", params={"step": step}, content=data).raise_for_status()

        try:
            final = trainer.train_rank(
                job.trainer,
                dataset,
                steps=job.steps,
                checkpoint_every=job.checkpoint_every,
                rank=job.rank,
                world_size=job.world_size,
                resume=resume,
                device=device,
                hooks=trainer.Hooks(losses=losses, checkpoint=checkpoint),
            )
            dist.barrier()  # rank 0 hosts the store: it must outlive every peer's last collective
        finally:
            dist.destroy_process_group()
    return {"rank": job.rank, "generation": job.generation, "steps": job.steps, "final_loss": final}


def _from_env() -> RankRun:
    """A rank in a Kubeflow PyTorchJob: the operator sets its RANK and the Master's rendezvous address."""
    job = json.loads(os.environ["CXMPUTE_RANK_JOB"])
    return RankRun(
        **job,
        rank=int(os.environ["RANK"]),
        rank_url=os.environ["CXMPUTE_RANK_URL"],
        host=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
    )


def main() -> None:
    job = _from_env() if "--from-env" in sys.argv[1:] else RankRun.model_validate_json(sys.stdin.read())
    print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main()
