"""`cxmpute inference serve` (a provider's inference server) and `cxmpute models push|pull|ls` (the archive).

`serve` stays on this machine: it loads model folders here and answers on a port here; only its endpoint
registration goes to the platform, through the platform client.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings
from cxmpute.terminal import err, transfer_bar

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
    if not (model or embedding or image or speech):  # before the model libraries' seconds of imports
        raise CxmputeError("give at least one --model, --embedding, --image or --speech", field="--model")
    import uvicorn

    from compute.inference import archive, backends
    from compute.inference.server import create_app

    settings = get_settings()
    api_key = api_key or settings.inference_api_key
    specs = ([backends.ModelSpec.parse("text", m) for m in model]
             + [backends.ModelSpec.parse("embedding", m) for m in embedding]
             + [backends.ModelSpec.parse("image", m) for m in image]
             + [backends.ModelSpec(kind="speech", source="", name=s) for s in speech])
    loaded = []
    for spec in specs:
        if spec.source:  # archive:NAME is read in-process, like `models pull` (see below)
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

    from cxmpute.client import PlatformClient

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.1)
    with PlatformClient() as platform:
        while not server.should_exit:
            for provision_id in provisions:
                try:
                    platform.put(f"/v1/inference/endpoints/{provision_id}", json={"url": url, "api_key": api_key})
                except CxmputeError as exc:  # the platform may be down or refuse for a while: try again next round
                    log.warning("could not register provision %s: %s", provision_id, exc)
            time.sleep(every)


# The archive's names have no HTTP route yet, so `models push|pull|ls` read and write the platform's database
# and storage in-process: they work only on the machine holding the platform's data dir. Moving them onto the
# API needs routes for a name's CID and for uploading a directory archive.


@models_app.command()
def push(directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Model folder (from_pretrained)"),
         name: str = typer.Option(..., "--name", help="Name to store it under"),
         owner: str = typer.Option("local", help="Account the model belongs to")) -> None:
    """Store a model folder in the archive under NAME; prints its CID."""
    from compute.inference import archive

    total = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    with transfer_bar(f"push {name}", total) as advance:
        entry = archive.push(get_settings(), directory, name, owner, progress=advance)
    console.print(entry.cid, markup=False, highlight=False, soft_wrap=True)
    err.print(f"{name}: {entry.files} files, {entry.size} bytes")


@models_app.command()
def pull(name: str = typer.Argument(..., help="Archived model name"),
         dest: Path = typer.Argument(..., help="Folder to write (must not exist, or be empty)"),
         owner: str = typer.Option("local", help="Account the model belongs to")) -> None:
    """Fetch a model from the archive into DEST, verifying every chunk; DEST loads with from_pretrained."""
    from compute.inference import archive

    settings = get_settings()
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
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    # A name and a CID are what other commands take: folded onto more lines, never cut.
    table = Table(Column("name", overflow="fold"), Column("cid", overflow="fold"), "files", "size", "pushed")
    for e in entries:
        table.add_row(e.name, e.cid, str(e.files), str(e.size), e.pushed_at.isoformat(timespec="seconds"))
    console.print(table)
