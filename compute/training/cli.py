"""`cxmpute training submit|ls|show|cancel|manifest`: distributed training jobs through the platform API."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError

app = typer.Typer(
    help="Distributed training: PyTorch DDP across providers matched by price, checkpointed to "
    "storage, resumed when a provider is lost.",
    no_args_is_help=True,
)
console = Console()


def _widths(value: str) -> list[int]:
    try:
        return [int(w) for w in value.split(",") if w.strip()]
    except ValueError:
        raise CxmputeError(f"{value!r} is not comma-separated layer widths, e.g. 64,32", field="--hidden") from None


@app.command()
def submit(
    dataset: str = typer.Argument(..., help="CID of a CSV of numbers in your storage (`cxmpute storage put`)"),
    world_size: int = typer.Option(..., "--world-size", "-n", help="Ranks, each on its own provider"),
    steps: int = typer.Option(..., help="Optimizer steps"),
    max_price: int = typer.Option(..., "--max-price", help="Highest ask per compute-unit-second of any rank (gwei)"),
    min_price: int = typer.Option(0, "--min-price", help="Lowest ask accepted (gwei)"),
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints"),
    hidden: str = typer.Option("32", help="Hidden layer widths, comma-separated; empty: a linear model"),
    lr: float = typer.Option(0.05, help="Learning rate"),
    optimizer: str = typer.Option("sgd", help="sgd or adam"),
    batch_size: int = typer.Option(32, help="Rows per rank per step"),
    seed: int = typer.Option(0, help="Seeds the weights and the data order"),
    target_columns: int = typer.Option(1, help="The dataset's last columns that are targets"),
    cpu: int = typer.Option(1, help="vCPUs each rank leases"),
    memory_mb: int = typer.Option(1024, help="Memory each rank leases"),
    gpus: int = typer.Option(0, help="GPUs each rank leases (use --backend nccl)"),
    backend: str = typer.Option("gloo", help="gloo (CPU) or nccl (GPU)"),
    timeout: float = typer.Option(3600, help="Longest one generation of the ranks may run, in seconds"),
    max_restarts: int = typer.Option(3, help="Restarts from the latest checkpoint after a lost rank"),
) -> None:
    """Train the built-in MLP on DATASET across N providers; prints the job id."""
    body = {
        "dataset_cid": dataset,
        "world_size": world_size,
        "steps": steps,
        "checkpoint_every": checkpoint_every,
        "trainer": {
            "hidden": _widths(hidden),
            "lr": lr,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "seed": seed,
            "target_columns": target_columns,
        },
        "resources": {"cpu": cpu, "memory_mb": memory_mb, "gpu_count": gpus},
        "backend": backend,
        "price_min_gwei": min_price,
        "price_max_gwei": max_price,
        "timeout_s": timeout,
        "max_restarts": max_restarts,
    }
    with PlatformClient() as platform:
        console.print(platform.post("/v1/training/jobs", json=body)["id"], markup=False, highlight=False)


def _jobs_table() -> Table:
    # An id is what every other command takes: folded onto more lines where the terminal is narrow, never cut.
    return Table(Column("id", overflow="fold"), "state", "generation", "step", "ranks", "final loss", "created")


def _row(job: dict) -> list[str]:
    loss = f"{job['final_loss']:.6g}" if job["final_loss"] is not None else "-"
    return [
        job["id"],
        job["state"],
        str(job["generation"]),
        f"{job['step']}/{job['spec']['steps']}",
        str(job["spec"]["world_size"]),
        loss,
        job["created_at"][:19],
    ]


@app.command("ls")
def list_cmd(
    limit: int = typer.Option(50, min=1, max=500, help="How many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Your training jobs."""
    with PlatformClient() as platform:
        jobs = platform.get("/v1/training/jobs", params={"limit": limit})
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = _jobs_table()
    for job in jobs:
        table.add_row(*_row(job))
    console.print(table)


@app.command()
def show(job_id: str = typer.Argument(..., help="Training job id")) -> None:
    """A job's state, ranks, checkpoints and its last ten losses."""
    with PlatformClient() as platform:
        job = platform.get(f"/v1/training/jobs/{job_id}", params={"losses_steps": 0})
        recent = platform.get(
            f"/v1/training/jobs/{job_id}", params={"losses_from": max(1, job["step"] - 9), "losses_steps": 10}
        )
    job["losses"] = recent["losses"]
    table = _jobs_table()
    table.add_row(*_row(job))
    console.print(table)
    if job["error"]:
        console.print(f"error: {job['error']}", markup=False)
    ranks = Table("generation", "rank", Column("provider", overflow="fold"), "status", "cost gwei", title="ranks")
    for r in job["ranks"]:
        ranks.add_row(str(r["generation"]), str(r["rank"]), r["provider"], r["status"], str(r["cost_gwei"]))
    console.print(ranks)
    for c in job["checkpoints"]:
        # Never wrapped: a CID is copied from here.
        console.print(
            f"checkpoint step {c['step']} (generation {c['generation']}): {c['cid']}", highlight=False, soft_wrap=True
        )
    for p in job["losses"]:
        console.print(f"step {p['step']}: loss {p['loss']:.6g}", highlight=False)


@app.command()
def cancel(job_id: str = typer.Argument(..., help="Training job id")) -> None:
    """Stop a job; its ranks' leases are settled for the seconds they ran."""
    with PlatformClient() as platform:
        job = platform.delete(f"/v1/training/jobs/{job_id}")
    console.print(f"{job['id']} {job['state']}")


@app.command()
def manifest(
    job_id: str = typer.Argument(..., help="Training job id"),
    image: str = typer.Option("cxmpute/provider:local", help="Image holding the cxmpute package"),
    namespace: str = typer.Option("cxmpute", help="Kubernetes namespace"),
) -> None:
    """Print the job as Kubernetes objects (an Indexed Job and a headless Service) for `kubectl apply -f -`."""
    from compute.training.manifest import render
    from compute.training.spec import TrainingOut

    with PlatformClient() as platform:
        job = TrainingOut.model_validate(platform.get(f"/v1/training/jobs/{job_id}", params={"losses_steps": 0}))
    print(render(job, image, namespace), end="")
