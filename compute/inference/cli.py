"""`cxmpute inference serve` (a provider's inference server) and `cxmpute models push|pull|ls` (the archive)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.settings import get_settings
from cxmpute.terminal import cli_errors, err, transfer_bar

app = typer.Typer(help="Serve models to the network (OpenAI-compatible).", no_args_is_help=True)
models_app = typer.Typer(help="The model archive: push model folders, pull them back, list them.",
                         no_args_is_help=True)
console = Console()
log = logging.getLogger("cxmpute.inference")


@app.command()
def serve(
    model: list[str] = typer.Option([], "--model", "-m", help="Text-generation model: hub id, path or archive:NAME; "
                                    "NAME=SOURCE serves it as NAME"),
    embedding: list[str] = typer.Option([], "--embedding", "-e", help="sentence-transformers model (same forms)"),
    image: list[str] = typer.Option([], "--image", help="diffusers pipeline (same forms)"),
    speech: list[str] = typer.Option([], "--speech", help="Name to serve the text-to-speech backend as"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8100, help="Port to listen on"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ...; default: CUDA when present"),
    max_batch: int = typer.Option(32, min=1, help="Most sequences decoded together"),
    gather_ms: float = typer.Option(5.0, min=0, help="How long an idle batcher waits for company"),
    api_key: str | None = typer.Option(None, help="Require this bearer key; default CXMPUTE_INFERENCE_API_KEY "
                                       "(sent to the platform when registering)"),
    provision: list[str] = typer.Option([], "--provision", help="Inference provision this server works for: its "
                                        "endpoint is registered with the platform (and re-registered periodically)"),
    advertise_url: str | None = typer.Option(None, help="URL the platform reaches this server at "
                                             "(default http://HOST:PORT)"),
    register_every: float = typer.Option(60.0, min=1, help="Seconds between endpoint re-registrations"),
) -> None:
    """Load the models and serve them on an OpenAI-compatible API until interrupted."""
    import uvicorn

    from compute.inference import archive, backends
    from compute.inference.server import create_app

    settings = get_settings()
    api_key = api_key or settings.inference_api_key
    specs = ([backends.ModelSpec.parse("text", m) for m in model]
             + [backends.ModelSpec.parse("embedding", m) for m in embedding]
             + [backends.ModelSpec.parse("image", m) for m in image]
             + [backends.ModelSpec(kind="speech", source="", name=s) for s in speech])
    if not specs:
        raise typer.BadParameter("give at least one --model, --embedding, --image or --speech", param_hint="--model")
    loaded = []
    with cli_errors():
        for spec in specs:
            if spec.source:
                spec.source = archive.resolve(settings, spec.source)
            with err.status(f"loading {spec.kind} model {spec.name}"):
                loaded.append(backends.load(spec, device or settings.inference_device, max_batch=max_batch,
                                            gather_ms=gather_ms) if spec.kind == "text"
                              else backends.load(spec, device or settings.inference_device))
    server = uvicorn.Server(uvicorn.Config(create_app(loaded, api_key), host=host, port=port, log_level="info"))
    if provision:
        url = advertise_url or f"http://{host}:{port}"
        threading.Thread(target=_keep_registered, args=(server, provision, url, api_key, register_every),
                         daemon=True).start()
    err.print(f"serving {', '.join(f'{s.name} ({s.kind})' for s in specs)} on http://{host}:{port}/v1")
    server.run()


def _keep_registered(server, provisions: list[str], url: str, api_key: str | None, every: float) -> None:
    import time

    from compute.cli import _call

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.1)
    while not server.should_exit:
        for provision_id in provisions:
            try:
                _call("PUT", f"/v1/inference/endpoints/{provision_id}", {"url": url, "api_key": api_key})
            except Exception as exc:  # the platform may be down for a while (typer.Exit included): try again later
                log.warning("could not register provision %s: %s", provision_id, exc)
        time.sleep(every)


@models_app.command()
def push(directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Model folder (from_pretrained)"),
         name: str = typer.Option(..., "--name", help="Name to store it under"),
         owner: str = typer.Option("local", help="Account the model belongs to")) -> None:
    """Store a model folder in the archive under NAME; prints its CID."""
    from compute.inference import archive

    total = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    with cli_errors(), transfer_bar(f"push {name}", total) as advance:
        entry = archive.push(get_settings(), directory, name, owner, progress=advance)
    console.print(entry.cid)
    err.print(f"{name}: {entry.files} files, {entry.size} bytes")


@models_app.command()
def pull(name: str = typer.Argument(..., help="Archived model name"),
         dest: Path = typer.Argument(..., help="Folder to write (must not exist, or be empty)"),
         owner: str = typer.Option("local", help="Account the model belongs to")) -> None:
    """Fetch a model from the archive into DEST, verifying every chunk; DEST loads with from_pretrained."""
    from compute.inference import archive

    settings = get_settings()
    with cli_errors():
        entry = archive.get(settings, name, owner)
        with transfer_bar(f"pull {name}", entry.size) as advance:
            archive.pull(settings, name, dest, owner, progress=advance)
    err.print(f"{name} → {dest} ({entry.files} files, {entry.size} bytes)")


@models_app.command("ls")
def list_models(owner: str = typer.Option("local", help="Account whose models to list"),
                as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """List archived models."""
    from compute.inference import archive

    entries = archive.ls(get_settings(), owner)
    if as_json:
        console.print_json(data=[e.model_dump(mode="json") for e in entries])
        return
    table = Table("name", "cid", "files", "size", "pushed")
    for e in entries:
        table.add_row(e.name, e.cid, str(e.files), str(e.size), e.pushed_at.isoformat(timespec="seconds"))
    console.print(table)
