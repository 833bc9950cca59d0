"""`cxmpute storage put|get|stat|ls|pin|unpin|rm|gc|audit|repair|node|nodes`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from cxmpute.settings import get_settings
from cxmpute.terminal import cli_errors, err, transfer_bar
from stxrage import open_storage
from stxrage.models import parse_policy
from stxrage.registration import CREDENTIAL_FILE

app = typer.Typer(help="Content-addressed, replicated, verified storage.", no_args_is_help=True)
nodes_app = typer.Typer(help="Storage nodes this client places blocks on.", no_args_is_help=True)
app.add_typer(nodes_app, name="nodes")
console = Console()

OwnerOpt = typer.Option("local", "--owner", help="Account the files belong to")
JsonOpt = typer.Option(False, "--json", help="Print JSON")


def _print(model: BaseModel | list, as_json: bool) -> None:
    if as_json:
        doc = [m.model_dump(mode="json") for m in model] if isinstance(model, list) else model.model_dump(mode="json")
        console.print_json(json.dumps(doc))
    elif isinstance(model, BaseModel):
        for key, value in model.model_dump(mode="json").items():
            console.print(f"[bold]{key}[/bold]: {value}")


@app.command()
def put(path: Path = typer.Argument(..., exists=True, readable=True, help="A file, or a directory to archive"),
        private: bool = typer.Option(False, "--private", help="Encrypt on this side before upload"),
        public: bool = typer.Option(False, "--public", help="Let anyone who knows the CID read it"),
        policy: str | None = typer.Option(None, "--policy", "-p",
                                          help="Copies ('3') or erasure k/n ('4/6'); default: the client's"),
        name: str | None = typer.Option(None, "--name"), owner: str = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """Store a file or a directory; prints its CID."""
    try:
        chosen = parse_policy(policy) if policy else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    storage = open_storage()
    is_dir = path.is_dir()
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if is_dir else path.stat().st_size
    with cli_errors(), transfer_bar(f"put {path.name}", total) as advance:
        put_one = storage.put_dir if is_dir else storage.put_file
        stats = put_one(path, name=name, owner=owner, private=private, public=public, policy=chosen,
                        progress=advance)
    if as_json:
        _print(stats, True)
    else:
        console.print(stats.file.cid)
        err.print(f"{stats.file.size} bytes, {stats.file.chunks} chunks: {stats.new_blocks} new blocks, "
                  f"{stats.reused_blocks} already stored")


@app.command()
def get(cid: str, output: Path = typer.Option(..., "--output", "-o", help="Where to write the file"),
        byte_range: str | None = typer.Option(None, "--range", help="Bytes START-END (END exclusive)"),
        owner: str = OwnerOpt) -> None:
    """Fetch a file (or a directory archive, into the --output directory) by CID, verifying every block."""
    storage = open_storage()
    with cli_errors():
        info = storage.stat(cid, owner)
        if byte_range is None:
            get_one = storage.get_dir if info.kind == "dir" else storage.get_file
            with transfer_bar(f"get {cid[:16]}…", info.size) as advance:
                get_one(cid, output, owner, progress=advance)
            return
        start, sep, end = byte_range.partition("-")
        if not sep or not start.isdigit() or (end and not end.isdigit()):
            raise typer.BadParameter("use START-END or START-", param_hint="--range")
        output.write_bytes(storage.get_bytes(cid, owner, int(start), int(end) if end else None))


@app.command()
def stat(cid: str, owner: str = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """Show a file's size, chunks, policy and owner."""
    with cli_errors():
        _print(open_storage().stat(cid, owner), as_json)


@app.command("ls")
def list_files(owner: str = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """List the account's files."""
    files = open_storage().ls(owner)
    if as_json:
        _print(files, True)
        return
    table = Table("cid", "name", "kind", "size", "private", "pinned", "policy")
    for f in files:
        policy = f"×{f.policy.copies}" if f.policy.kind == "replicas" else f"{f.policy.k}-of-{f.policy.n}"
        table.add_row(f.cid, f.name or "", f.kind, str(f.size), str(f.private), str(f.pinned), policy)
    console.print(table)


@app.command()
def pin(cid: str, owner: str = OwnerOpt) -> None:
    """Keep a file (yours, or a public one) from garbage collection."""
    with cli_errors():
        open_storage().pin(cid, owner)


@app.command()
def unpin(cid: str, owner: str = OwnerOpt) -> None:
    """Let garbage collection take a file."""
    with cli_errors():
        open_storage().unpin(cid, owner)


@app.command()
def publish(cid: str, owner: str = OwnerOpt) -> None:
    """Let anyone who knows the CID read one of your files."""
    with cli_errors():
        open_storage().publish(cid, owner, True)


@app.command()
def unpublish(cid: str, owner: str = OwnerOpt) -> None:
    """Make one of your files readable by you only again."""
    with cli_errors():
        open_storage().publish(cid, owner, False)


@app.command("rm")
def remove(cid: str, owner: str = OwnerOpt) -> None:
    """Delete one of your files (blocks other files share stay)."""
    with cli_errors():
        open_storage().delete(cid, owner)


@app.command()
def gc() -> None:
    """Free blocks that no pinned file needs."""
    console.print(f"{open_storage().gc()} blocks freed")


@app.command()
def audit(sample: int | None = typer.Option(None, help="Fragments to challenge (default: all)"),
          as_json: bool = JsonOpt) -> None:
    """Challenge nodes to prove they hold their fragments."""
    report = open_storage().audit(sample)
    _print(report, as_json)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def repair(as_json: bool = JsonOpt) -> None:
    """Check nodes, then rebuild lost or corrupt fragments on healthy nodes."""
    storage = open_storage()
    storage.check_nodes()
    report = storage.repair()
    _print(report, as_json)
    if report.lost:
        raise typer.Exit(1)


@app.command()
def maintain(interval: float = typer.Option(0, help="Seconds between rounds; 0 runs one round"),
             rounds: int = typer.Option(0, help="Stop after this many rounds (0: until interrupted)"),
             sample: int = typer.Option(256, help="Fragments audited per round"), as_json: bool = JsonOpt) -> None:
    """Keep redundancy at target: check nodes, audit a sample, repair — once, or every --interval seconds."""
    storage = open_storage()
    done = 0
    while True:
        report = storage.maintain(sample)
        if as_json:
            _print(report, True)
        else:
            console.print(f"down: {len(report.nodes_down)}, audited: {report.audit.checked}, "
                          f"failed: {len(report.audit.failed)}, rebuilt: {report.repair.fragments_rebuilt}, "
                          f"degraded: {len(report.repair.degraded)}, lost: {len(report.repair.lost)}")
        done += 1
        if interval <= 0 or (rounds and done >= rounds):
            return
        time.sleep(interval)


@app.command()
def node(root: Path = typer.Option(..., "--dir", help="Directory the node keeps blocks in"),
         host: str = typer.Option("127.0.0.1", help="Address to listen on"),
         port: int = typer.Option(8700, help="Port to listen on"),
         quota: int = typer.Option(10 * 1024**3, help="Bytes the node may hold"),
         price: float = typer.Option(0.0, help="Price per GB-month")) -> None:
    """Run a storage node: an HTTP block store with its own quota and price, which serves only callers
    presenting its credential (CXMPUTE_STORAGE_NODE_CREDENTIAL, else the one kept in DIR/node.token)."""
    import uvicorn

    from stxrage.node import NodeConfig, create_node_app

    credential = get_settings().storage_node_credential
    config = NodeConfig(root=root, quota_bytes=quota, price_per_gb_month=price, credential=credential)
    app = create_node_app(config)
    source = "CXMPUTE_STORAGE_NODE_CREDENTIAL" if credential else root / CREDENTIAL_FILE
    err.print(f"storage node on http://{host}:{port}; its credential is in {source}: register the node with it")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@nodes_app.command("add")
def nodes_add(url: str,
              credential_file: Path | None = typer.Option(
                  None, "--credential-file", exists=True, dir_okay=False, readable=True,
                  help="The node's credential (its DIR/node.token); default: CXMPUTE_STORAGE_NODE_CREDENTIAL"),
              provider: str | None = typer.Option(None, help="EVM address of the provider account running it"),
              as_json: bool = JsonOpt) -> None:
    """Register a storage node (http://host:port) or a directory (file:///path) in this platform's catalog,
    as its operator. Providers register their nodes through the API (POST /v1/storage/nodes), signed."""
    credential = credential_file.read_text().strip() if credential_file else get_settings().storage_node_credential
    if credential is None and not url.startswith("file://"):
        raise typer.BadParameter("a storage node is registered with the credential it requires",
                                 param_hint="--credential-file")
    with cli_errors():
        _print(open_storage().add_node(url, credential=credential, provider=provider), as_json)


@nodes_app.command("rm")
def nodes_rm(node_id: str) -> None:
    """Stop placing on a node; run `repair` to move its blocks elsewhere."""
    with cli_errors():
        open_storage().remove_node(node_id)


@nodes_app.command("ls")
def nodes_ls(check: bool = typer.Option(False, "--check", help="Ping each node first"),
             as_json: bool = JsonOpt) -> None:
    """List storage nodes and their status."""
    storage = open_storage()
    nodes = storage.check_nodes() if check else storage.nodes()
    if as_json:
        _print(nodes, True)
        return
    table = Table("id", "url", "status", "capacity", "price/GB-month", "provider", "audit failures")
    for n in nodes:
        table.add_row(n.id, n.url, n.status, str(n.capacity_bytes), str(n.price_per_gb_month), n.provider or "",
                      str(n.audit_failures))
    console.print(table)
