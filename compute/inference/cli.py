"""`cxmpute inference serve` (a provider's inference server) and `cxmpute models push|pull|ls|rm` (the archive).

`serve` stays on this machine: it loads model folders here and answers on a port here. What it needs from
the platform — an ``archive:NAME`` model's files, its endpoint registration — comes through the platform
client, as does every `models` command: the folder's files go up and come back through ``/v1/storage`` and
``/v1/models/archive`` names them, so they work from any machine, as the account the client signs in as.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.errors import CxmputeError
from cxmpute.logging import get_logger
from cxmpute.settings import get_settings
from cxmpute.terminal import err, transfer_bar

if TYPE_CHECKING:
    from cxmpute.client import PlatformClient

app = typer.Typer(help="Serve models to the network (OpenAI-compatible).", no_args_is_help=True)
models_app = typer.Typer(help="The model archive: push model folders, pull them back, list them.", no_args_is_help=True)
console = Console()
log = get_logger(__name__)

ARCHIVE = "/v1/models/archive"
FILES = "/v1/storage/files"
PREFIX = "archive:"
PAGE = 500
READ_SIZE = 1 << 20

ModelOpt = typer.Option(
    [],
    "--model",
    "-m",
    help="Text-generation model: hub id, path or archive:NAME (pulled "
    "through the platform from your archive); NAME=SOURCE serves it as NAME",
)
EmbeddingOpt = typer.Option([], "--embedding", "-e", help="sentence-transformers model (same forms)")
ImageOpt = typer.Option([], "--image", help="diffusers pipeline (same forms)")
SpeechOpt = typer.Option([], "--speech", help="Name to serve the text-to-speech backend as")
ProvisionOpt = typer.Option(
    [],
    "--provision",
    help="Inference provision this server works for: its endpoint is "
    "registered with the platform (and re-registered periodically)",
)
FolderArg = typer.Argument(..., exists=True, file_okay=False, help="Model folder (from_pretrained)")
DestArg = typer.Argument(..., help="Folder to write (must not exist, or be empty)")


@app.command()
def serve(
    model: list[str] = ModelOpt,
    embedding: list[str] = EmbeddingOpt,
    image: list[str] = ImageOpt,
    speech: list[str] = SpeechOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8100, help="Port to listen on"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ...; default: CUDA when present"),
    max_batch: int = typer.Option(32, min=1, help="Most sequences decoded together"),
    gather_ms: float = typer.Option(5.0, min=0, help="How long an idle batcher waits for company"),
    api_key: str | None = typer.Option(
        None, help="Require this bearer key; default CXMPUTE_INFERENCE_API_KEY (sent to the platform when registering)"
    ),
    provision: list[str] = ProvisionOpt,
    advertise_url: str | None = typer.Option(
        None, help="URL the platform reaches this server at (default http://HOST:PORT)"
    ),
    register_every: float = typer.Option(60.0, min=1, help="Seconds between endpoint re-registrations"),
) -> None:
    """Load the models and serve them on an OpenAI-compatible API until interrupted."""
    if not (model or embedding or image or speech):  # before the model libraries' seconds of imports
        raise CxmputeError("give at least one --model, --embedding, --image or --speech", field="--model")
    import uvicorn

    from compute.inference import backends
    from compute.inference.server import create_app
    from cxmpute.client import PlatformClient

    settings = get_settings()
    api_key = api_key or settings.inference_api_key
    specs = (
        [backends.ModelSpec.parse("text", m) for m in model]
        + [backends.ModelSpec.parse("embedding", m) for m in embedding]
        + [backends.ModelSpec.parse("image", m) for m in image]
        + [backends.ModelSpec(kind="speech", source="", name=s) for s in speech]
    )
    if any(s.source.startswith(PREFIX) for s in specs):
        with PlatformClient() as platform:
            for spec in specs:
                spec.source = resolve(platform, spec.source)
    loaded = []
    for spec in specs:
        with err.status(f"loading {spec.kind} model {spec.name}"):
            loaded.append(
                backends.load(spec, device or settings.inference_device, max_batch=max_batch, gather_ms=gather_ms)
                if spec.kind == "text"
                else backends.load(spec, device or settings.inference_device)
            )
    server = uvicorn.Server(uvicorn.Config(create_app(loaded, api_key), host=host, port=port, log_level="info"))
    if provision:
        url = advertise_url or f"http://{host}:{port}"
        threading.Thread(
            target=_keep_registered, args=(server, provision, url, api_key, register_every), daemon=True
        ).start()
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


def _model_path(name: str) -> str:
    # Dots escaped too: a client would otherwise resolve "a/../b" to "b" before the platform could refuse it.
    return f"{ARCHIVE}/{quote(name, safe='/').replace('.', '%2E')}"


def _cid(cid: str) -> str:
    return quote(cid, safe="")


def _inside(root: Path, relative: str) -> Path:
    """Where an archive's file goes under ``root``; a path that would leave it is refused."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise CxmputeError(f"the archive names a path outside the folder: {relative!r}", field="name")
    return root.joinpath(*pure.parts)


def _download(platform: PlatformClient, path: str, target: Path, advance: Callable[[int], None]) -> int:
    """Stream one file to ``target``; the bytes written."""
    from cxmpute.client import PlatformUnreachable

    target.parent.mkdir(parents=True, exist_ok=True)
    written, opened = 0, False
    try:
        with platform.stream("GET", path) as resp, target.open("wb") as f:
            opened = True
            for block in resp.iter_bytes(READ_SIZE):
                f.write(block)
                written += len(block)
                advance(len(block))
    except PlatformUnreachable:
        if not opened:
            raise
        # The platform checks every block as it sends it and stops at one that fails: not an outage.
        raise CxmputeError(
            f"{target.name}: the platform stopped sending after {written} bytes (a stored block "
            "failed verification, or the connection dropped)",
            field="name",
        ) from None
    return written


def _pull(platform: PlatformClient, entry: dict[str, Any], dest: Path) -> None:
    """Write an archived model's files into ``dest`` (absent or empty), each checked against its size.
    They are written beside ``dest`` and renamed into place, so a broken pull never leaves half a model."""
    name, cid = entry["name"], entry["cid"]
    files = platform.get(f"{FILES}/{_cid(cid)}/archive")
    if len(files) != entry["files"] or sum(f["size"] for f in files) != entry["size"]:
        raise CxmputeError(
            f"{cid} holds {len(files)} files, {sum(f['size'] for f in files)} bytes; the archive "
            f"recorded {entry['files']} files, {entry['size']} bytes",
            field="name",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with transfer_bar(f"pull {name}", entry["size"]) as advance:
            for file in files:
                got = _download(
                    platform,
                    f"{FILES}/{_cid(cid)}/archive/{quote(file['path'])}",
                    _inside(staging, file["path"]),
                    advance,
                )
                if got != file["size"]:
                    raise CxmputeError(
                        f"{file['path']}: received {got} bytes, the archive holds {file['size']}", field="name"
                    )
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def resolve(platform: PlatformClient, source: str) -> str:
    """``archive:NAME`` (the signed-in account's) as a folder on this machine, pulled through the API once
    per CID into the data dir; any other source unchanged."""
    if not source.startswith(PREFIX):
        return source
    entry = platform.get(_model_path(source.removeprefix(PREFIX)))
    folder = platform.settings.data_dir / "models" / entry["cid"]
    if not folder.exists():
        _pull(platform, entry, folder)
    return str(folder)


def _empty_or_absent(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CxmputeError(f"{dest} already exists and is not an empty directory", field="DEST")


@models_app.command()
def push(
    directory: Path = FolderArg,
    name: str = typer.Option(..., "--name", help="Name to store it under (replaces a model of that name)"),
) -> None:
    """Store a model folder in the archive under NAME; prints its CID."""
    from cxmpute.client import PlatformClient, PlatformError
    from stxrage.archive_upload import folder_files, upload_folder

    files = folder_files(directory)
    if not files:
        raise CxmputeError(f"{directory} holds no files", field="DIRECTORY")
    with PlatformClient() as platform:
        try:  # a name the platform refuses is refused before the upload, not after it
            platform.get(_model_path(name))
        except PlatformError as exc:
            if exc.status_code != 404:
                raise
        # One tar of the folder, stored as one directory archive, which the name then points at.
        with transfer_bar(f"push {name}", sum(p.stat().st_size for p in files)) as advance:
            stats = upload_folder(platform, directory, files, {"name": name}, advance)
        entry = platform.put(_model_path(name), json={"cid": stats["file"]["cid"]})
    console.print(entry["cid"], markup=False, highlight=False, soft_wrap=True)
    err.print(f"{name}: {entry['files']} files, {entry['size']} bytes")


@models_app.command()
def pull(name: str = typer.Argument(..., help="Archived model name"), dest: Path = DestArg) -> None:
    """Fetch a model from the archive into DEST (every block verified, every file's size checked); DEST loads
    with from_pretrained."""
    from cxmpute.client import PlatformClient

    _empty_or_absent(dest)
    with PlatformClient() as platform:
        entry = platform.get(_model_path(name))
        _pull(platform, entry, dest)
    err.print(f"{name} → {dest} ({entry['files']} files, {entry['size']} bytes)")


@models_app.command("ls")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """List your archived models."""
    from cxmpute.client import PlatformClient

    entries: list[dict[str, Any]] = []
    with PlatformClient() as platform:
        while True:
            page = platform.get(ARCHIVE, params={"limit": PAGE, "offset": len(entries)})
            entries += page
            if len(page) < PAGE:
                break
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    # A name and a CID are what other commands take: folded onto more lines, never cut.
    table = Table(Column("name", overflow="fold"), Column("cid", overflow="fold"), "files", "size", "pushed")
    for e in entries:
        table.add_row(e["name"], e["cid"], str(e["files"]), str(e["size"]), e["pushed_at"][:19])
    console.print(table)


@models_app.command("rm")
def remove(name: str = typer.Argument(..., help="Archived model name")) -> None:
    """Drop a name from the archive; its files stay stored (`cxmpute storage rm CID` deletes them)."""
    from cxmpute.client import PlatformClient

    with PlatformClient() as platform:
        entry = platform.delete(_model_path(name))
    err.print(f"{name} removed; its files stay stored as {entry['cid']}")
