"""`cxmpute storage put|get|stat|ls|pin|unpin|publish|unpublish|rm|audit|repair|maintain|gc|node|nodes`.

Every command on files goes through the platform's API (``/v1/storage``) as whoever the platform client
signs in as. The node admin commands use the operator routes with this machine's operator token.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings
from cxmpute.terminal import err, transfer_bar

app = typer.Typer(help="Content-addressed, replicated, verified storage.", no_args_is_help=True)
nodes_app = typer.Typer(help="Storage nodes the platform places blocks on.", no_args_is_help=True)
app.add_typer(nodes_app, name="nodes")
console = Console()

JsonOpt = typer.Option(False, "--json", help="Print JSON")
PathArg = typer.Argument(..., exists=True, readable=True, help="A file, or a directory of files")
OutputOpt = typer.Option(..., "--output", "-o", help="Where to write the file (a directory for a directory archive)")
NodeDirOpt = typer.Option(..., "--dir", help="Directory the node keeps blocks in")
CredentialFileOpt = typer.Option(
    None,
    "--credential-file",
    exists=True,
    dir_okay=False,
    readable=True,
    help="The node's credential (its DIR/node.token); default: CXMPUTE_STORAGE_NODE_CREDENTIAL",
)
FILES = "/v1/storage/files"
READ_SIZE = 1 << 20
STORE_BYTES_PER_S = 8 << 20  # the slowest rate a platform is waited on to store an upload it has received


def _print(doc: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(doc))
    elif isinstance(doc, dict):
        for key, value in doc.items():
            console.print(f"[bold]{key}[/bold]: {value}")


def _operator() -> PlatformClient:
    """The node admin routes answer the platform's operator credential only, never an account."""
    return PlatformClient(api_key=get_settings().resolved_operator_token())


def _cid(cid: str) -> str:
    return quote(cid, safe="")


class _FileBody:
    """A file as a streamed request body. Iterable again from the start, so the client's one retry after a
    lapsed session sends the whole file rather than what is left of a spent generator."""

    def __init__(self, path: Path, advance):
        self.path, self.advance, self.sent = path, advance, 0

    def __iter__(self) -> Iterator[bytes]:
        self.advance(-self.sent)
        self.sent = 0
        with self.path.open("rb") as f:
            while block := f.read(READ_SIZE):
                self.sent += len(block)
                self.advance(len(block))
                yield block


@app.command()
def put(
    path: Path = PathArg,
    private: bool = typer.Option(False, "--private", help="Encrypt before the data leaves the platform"),
    public: bool = typer.Option(False, "--public", help="Let anyone who knows the CID read it"),
    policy: str | None = typer.Option(
        None, "--policy", "-p", help="Copies ('3') or erasure k/n ('4/6'); default: the platform's"
    ),
    name: str | None = typer.Option(
        None, "--name", help="Name to store it under (default: the file's or directory's own)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Store a file, or a directory as one directory archive; prints its CID."""
    if policy is not None:
        from stxrage.models import parse_policy

        try:
            parse_policy(policy)
        except ValueError as exc:
            raise CxmputeError(str(exc), field="--policy") from None
    params = {
        "private": private,
        "public": public,
        "name": name or path.resolve().name,
        **({"policy": policy} if policy else {}),
    }
    if path.is_dir():
        from stxrage.archive_upload import folder_files, upload_folder

        files = folder_files(path)
        if not files:
            raise CxmputeError(f"{path} holds no files", field="PATH")
        total = sum(p.stat().st_size for p in files)
        with PlatformClient() as platform, transfer_bar(f"put {path.name}", total) as advance:
            stats = upload_folder(platform, path, files, params, advance)
    else:
        size = path.stat().st_size
        with PlatformClient() as platform, transfer_bar(f"put {path.name}", size) as advance:
            # The answer comes once the platform has stored the whole file, which takes longer the larger it is.
            wait = httpx.Timeout(platform.timeout, connect=5.0, read=platform.timeout + size / STORE_BYTES_PER_S)
            stats = platform.post(FILES, params=params, content=_FileBody(path, advance), timeout=wait)
    if as_json:
        _print(stats, True)
        return
    console.print(stats["file"]["cid"])
    err.print(
        f"{stats['file']['size']} bytes, {stats['file']['chunks']} chunks: {stats['new_blocks']} new "
        f"blocks, {stats['reused_blocks']} already stored"
    )


def _range_header(byte_range: str) -> str:
    """``START-END`` (END exclusive) or ``START-`` as an HTTP Range header (whose END is inclusive)."""
    start, sep, end = byte_range.partition("-")
    if not sep or not start.isdigit() or (end and not end.isdigit()) or (end and int(end) <= int(start)):
        raise CxmputeError(f"{byte_range!r}: use START-END (END exclusive, above START) or START-", field="--range")
    return f"bytes={start}-{int(end) - 1 if end else ''}"


def _download(
    platform: PlatformClient, path: str, target: Path, advance, headers: dict[str, str] | None = None
) -> None:
    """Stream one file to ``target`` through a partial file, so a broken transfer leaves no truncated file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        with platform.stream("GET", path, headers=headers) as resp, partial.open("wb") as f:
            for block in resp.iter_bytes(READ_SIZE):
                f.write(block)
                advance(len(block))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _inside(root: Path, relative: str) -> Path:
    """Where an archive's file goes under ``root``; a path that would leave it is refused."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise CxmputeError(f"the archive names a path outside the output directory: {relative!r}", field="cid")
    return root.joinpath(*pure.parts)


@app.command()
def get(
    cid: str,
    output: Path = OutputOpt,
    byte_range: str | None = typer.Option(None, "--range", help="Bytes START-END (END exclusive) of a file"),
) -> None:
    """Fetch a file (or a directory archive, into the --output directory) by CID; the platform verifies every
    block."""
    headers = {"Range": _range_header(byte_range)} if byte_range is not None else None
    with PlatformClient() as platform:
        info = platform.get(f"{FILES}/{_cid(cid)}/stat")
        if info["kind"] != "dir":
            with transfer_bar(f"get {info.get('name') or cid}", info["size"]) as advance:
                _download(platform, f"{FILES}/{_cid(cid)}", output, advance, headers)
            return
        if headers:
            raise CxmputeError(f"{cid} is a directory archive: fetch it whole, without --range", field="--range")
        entries = platform.get(f"{FILES}/{_cid(cid)}/archive")
        with transfer_bar(f"get {info.get('name') or cid}", info["size"]) as advance:
            for entry in entries:
                target = _inside(output, entry["path"])
                _download(platform, f"{FILES}/{_cid(cid)}/archive/{quote(entry['path'])}", target, advance)


@app.command()
def stat(cid: str, as_json: bool = JsonOpt) -> None:
    """Show a file's size, chunks, policy and owner."""
    with PlatformClient() as platform:
        _print(platform.get(f"{FILES}/{_cid(cid)}/stat"), as_json)


def _policy(policy: dict) -> str:
    return f"×{policy['copies']}" if policy.get("kind") == "replicas" else f"{policy.get('k')}-of-{policy.get('n')}"


@app.command("ls")
def list_files(as_json: bool = JsonOpt) -> None:
    """List your files."""
    with PlatformClient() as platform:
        files = platform.get(FILES)
    if as_json:
        _print(files, True)
        return
    table = Table("cid", "name", "kind", "size", "private", "public", "pinned", "policy")
    table.columns[0].overflow = "fold"
    for f in files:
        table.add_row(
            f["cid"],
            f.get("name") or "",
            f["kind"],
            str(f["size"]),
            str(f["private"]),
            str(f["public"]),
            str(f["pinned"]),
            _policy(f["policy"]),
        )
    console.print(table)


def _file_action(cid: str, action: str) -> None:
    with PlatformClient() as platform:
        platform.post(f"{FILES}/{_cid(cid)}/{action}")


@app.command()
def pin(cid: str) -> None:
    """Keep a file (yours, or a public one) from garbage collection."""
    _file_action(cid, "pin")


@app.command()
def unpin(cid: str) -> None:
    """Let garbage collection take a file."""
    _file_action(cid, "unpin")


@app.command()
def publish(cid: str) -> None:
    """Let anyone who knows the CID read one of your files."""
    _file_action(cid, "publish")


@app.command()
def unpublish(cid: str) -> None:
    """Make one of your files readable by you only again."""
    _file_action(cid, "unpublish")


@app.command("rm")
def remove(cid: str) -> None:
    """Delete one of your files (blocks other files share stay)."""
    with PlatformClient() as platform:
        platform.delete(f"{FILES}/{_cid(cid)}")


@app.command()
def gc() -> None:
    """Free blocks that no pinned file needs (the operator, on the platform's own machine)."""
    # The API has no garbage-collection route: collecting is upkeep of this machine's own block catalog by
    # its operator, so it opens that catalog directly, as the API process does.
    from stxrage import open_storage

    console.print(f"{open_storage().gc()} blocks freed")


@app.command()
def audit(
    sample: int | None = typer.Option(None, min=1, help="Fragments to challenge (default: all)"),
    as_json: bool = JsonOpt,
) -> None:
    """Challenge nodes to prove they hold their fragments (operator)."""
    with _operator() as platform:
        report = platform.post("/v1/storage/audit", params={"sample": sample} if sample else None)
    _print(report, as_json)
    if report["failed"]:
        raise typer.Exit(1)


@app.command()
def repair(as_json: bool = JsonOpt) -> None:
    """Check nodes, then rebuild lost or corrupt fragments on healthy nodes (operator)."""
    with _operator() as platform:
        report = platform.post("/v1/storage/repair")
    _print(report, as_json)
    if report["lost"]:
        raise typer.Exit(1)


@app.command()
def maintain(
    interval: float = typer.Option(0, help="Seconds between rounds; 0 runs one round"),
    rounds: int = typer.Option(0, help="Stop after this many rounds (0: until interrupted)"),
    sample: int = typer.Option(256, min=1, help="Fragments audited per round"),
    as_json: bool = JsonOpt,
) -> None:
    """Keep redundancy at target: audit a sample, check nodes and repair — once, or every --interval seconds
    (operator)."""
    done = 0
    with _operator() as platform:
        while True:
            audited = platform.post("/v1/storage/audit", params={"sample": sample})
            repaired = platform.post("/v1/storage/repair")
            down = [n["id"] for n in platform.get("/v1/storage/nodes") if n["status"] == "down"]
            if as_json:
                _print({"nodes_down": down, "audit": audited, "repair": repaired}, True)
            else:
                console.print(
                    f"down: {len(down)}, audited: {audited['checked']}, failed: {len(audited['failed'])}, "
                    f"rebuilt: {repaired['fragments_rebuilt']}, degraded: {len(repaired['degraded'])}, "
                    f"lost: {len(repaired['lost'])}"
                )
            done += 1
            if interval <= 0 or (rounds and done >= rounds):
                return
            time.sleep(interval)


@app.command()
def node(
    root: Path = NodeDirOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8700, help="Port to listen on"),
    quota: int = typer.Option(10 * 1024**3, help="Bytes the node may hold"),
    price: float = typer.Option(0.0, help="Price per GB-month"),
) -> None:
    """Run a storage node: an HTTP block store with its own quota and price, which serves only callers
    presenting its credential (CXMPUTE_STORAGE_NODE_CREDENTIAL, else the one kept in DIR/node.token)."""
    import uvicorn

    from stxrage.node import NodeConfig, create_node_app
    from stxrage.registration import CREDENTIAL_FILE

    credential = get_settings().storage_node_credential
    config = NodeConfig(root=root, quota_bytes=quota, price_per_gb_month=price, credential=credential)
    source = "CXMPUTE_STORAGE_NODE_CREDENTIAL" if credential else root / CREDENTIAL_FILE
    err.print(f"storage node on http://{host}:{port}; its credential is in {source}: register the node with it")
    uvicorn.run(create_node_app(config), host=host, port=port, log_level="warning")


@nodes_app.command("add")
def nodes_add(
    url: str,
    credential_file: Path | None = CredentialFileOpt,
    provider: str | None = typer.Option(None, help="EVM address of the provider account running it"),
    as_json: bool = JsonOpt,
) -> None:
    """Register a storage node (http://host:port) or a directory (file:///path) in this platform's catalog,
    as its operator. Providers register their nodes through the API (POST /v1/storage/nodes), signed."""
    credential = credential_file.read_text().strip() if credential_file else get_settings().storage_node_credential
    if credential is None and not url.startswith("file://"):
        raise CxmputeError("a storage node is registered with the credential it requires", field="--credential-file")
    # The API registers only a provider's signed, staked node; the operator enrolling a node of its own (or a
    # directory on this machine) has no route, so it writes this machine's catalog directly, as the API does.
    from stxrage import open_storage

    _print(open_storage().add_node(url, credential=credential, provider=provider).model_dump(mode="json"), as_json)


@nodes_app.command("rm")
def nodes_rm(node_id: str, as_json: bool = JsonOpt) -> None:
    """Stop placing on a node (operator); run `repair` to move its blocks elsewhere."""
    with _operator() as platform:
        _print(platform.delete(f"/v1/storage/nodes/{quote(node_id, safe='')}"), as_json)


@nodes_app.command("ls")
def nodes_ls(
    mine: bool = typer.Option(False, "--mine", help="Only the nodes you registered as a provider"),
    as_json: bool = JsonOpt,
) -> None:
    """List storage nodes and their status (all of them: operator; --mine: the provider's own)."""
    with PlatformClient() if mine else _operator() as platform:
        nodes = platform.get("/v1/storage/nodes/mine" if mine else "/v1/storage/nodes")
    if as_json:
        _print(nodes, True)
        return
    table = Table("id", "url", "status", "capacity", "used", "price/GB-month", "provider", "audit failures")
    for column in table.columns[:2] + table.columns[6:7]:
        column.overflow = "fold"
    for n in nodes:
        table.add_row(
            n["id"],
            n["url"],
            n["status"],
            str(n["capacity_bytes"]),
            str(n["used_bytes"]),
            str(n["price_per_gb_month"]),
            n.get("provider") or "",
            str(n["audit_failures"]),
        )
    console.print(table)
