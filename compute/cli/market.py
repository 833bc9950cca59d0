"""`cxmpute market`: what a request for compute would get and cost, and opening the lease."""

from __future__ import annotations

import typer

from compute.cli.output import show
from cxmpute.client import PlatformClient

app = typer.Typer(help="Quote and request compute.", no_args_is_help=True)
_KIND = typer.Option(..., help="vm, container, function, inference or agent")
_MAX = typer.Option(..., help="Highest ask accepted, gwei per CU-second")
_PROVISION = typer.Option(None, help="Only this provision (an id from GET /v1/market/provisions)")


def _send(
    path: str,
    kind: str,
    price_max: int,
    price_min: int,
    duration_s: int | None,
    term: str,
    cpu: int,
    memory_mb: int,
    gpu_count: int,
    gpu_model: str,
    model: str | None,
    image: str | None,
    region: str | None,
    provision: str | None,
) -> None:
    """Both commands send the same request body, to a quote or to open the lease."""
    body = {
        "provision_id": provision,
        "kind": kind,
        "price_min_gwei": price_min,
        "price_max_gwei": price_max,
        "term": term,
        "duration_s": duration_s,
        "model": model,
        "image": image,
        "region": region,
        "resources": {"cpu": cpu, "memory_mb": memory_mb, "gpu_count": gpu_count, "gpu_model": gpu_model},
    }
    with PlatformClient() as api:
        show(api.post(path, json=body))


@app.command("quote")
def quote(
    kind: str = _KIND,
    price_max: int = _MAX,
    price_min: int = typer.Option(0),
    duration_s: int = typer.Option(None),
    term: str = typer.Option("seconds", help="seconds, hour or month"),
    cpu: int = typer.Option(1),
    memory_mb: int = typer.Option(1024),
    gpu_count: int = typer.Option(0),
    gpu_model: str = typer.Option(""),
    model: str = typer.Option(None),
    image: str = typer.Option(None),
    region: str = typer.Option(None),
    provision: str = _PROVISION,
) -> None:
    """What a request would get and cost, or why nothing matches."""
    _send("/v1/market/quote", **locals())


@app.command("request")
def request(
    kind: str = _KIND,
    price_max: int = _MAX,
    price_min: int = typer.Option(0),
    duration_s: int = typer.Option(None),
    term: str = typer.Option("seconds", help="seconds, hour or month"),
    cpu: int = typer.Option(1),
    memory_mb: int = typer.Option(1024),
    gpu_count: int = typer.Option(0),
    gpu_model: str = typer.Option(""),
    model: str = typer.Option(None),
    image: str = typer.Option(None),
    region: str = typer.Option(None),
    provision: str = _PROVISION,
) -> None:
    """Match and open a lease (escrow held, or the first rental term billed)."""
    # A 409 "no provision matches" carries in its one line why each provision was passed over (no_match).
    _send("/v1/market/requests", **locals())
