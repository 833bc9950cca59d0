"""`cxmpute memory write|search|ask|ls`: the memory agents and views of the platform's API, as whoever the
platform client signs in as."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError

app = typer.Typer(help="Store knowledge in named memories, search it and ask questions about it.", no_args_is_help=True)
console = Console()

MemoryOpt = typer.Option("default", "--memory", "-m", help="Name of the memory")
JsonOpt = typer.Option(False, "--json", help="Print the raw JSON output")
FilesOpt = typer.Option([], "--file", "-f", exists=True, dir_okay=False, help="Text files to store")
MetaOpt = typer.Option([], "--meta", help="Metadata key=value for every document")


def _invoke(agent_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    with PlatformClient() as platform:
        return platform.post(f"/v1/agents/{agent_id}/invoke", json={"input": payload})["output"]


def _metadata(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CxmputeError(f"expected key=value, got {pair!r}", field="--meta")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _filter(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CxmputeError(f"not JSON: {exc}", field="--filter") from None


def _table(*columns: str, fold: tuple[str, ...] = ("id",), **kwargs: Any) -> Table:
    table = Table(*columns, **kwargs)
    for column in table.columns:
        if column.header in fold:
            column.overflow = "fold"
    return table


@app.command()
def write(
    text: str | None = typer.Argument(None, help="Text to remember"),
    files: list[Path] = FilesOpt,
    meta: list[str] = MetaOpt,
    memory: str = MemoryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Store a text and/or text files (one document each, id = file name)."""
    documents = [{"id": p.name, "text": p.read_text(errors="replace"), "metadata": {"source": str(p)}} for p in files]
    if text is None and not documents:
        raise CxmputeError("give a text or --file", field="TEXT")
    out = _invoke("memory.write", {"memory": memory, "text": text, "documents": documents, "metadata": _metadata(meta)})
    if as_json:
        console.print_json(json.dumps(out))
        return
    console.print(f"stored {out['documents']} document(s) as {out['chunks']} item(s) in memory {memory!r}")
    for item_id in out["ids"]:
        console.print(f"  {item_id}", overflow="fold")


@app.command()
def search(
    query: str,
    k: int = typer.Option(5, "--k", "-k"),
    filter: str | None = typer.Option(None, "--filter"),
    memory: str = MemoryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find the passages closest in meaning to QUERY."""
    out = _invoke("memory.search", {"memory": memory, "query": query, "k": k, "filter": _filter(filter)})
    if as_json:
        console.print_json(json.dumps(out))
        return
    table = _table("score", "id", "text", "metadata")
    for hit in out["results"]:
        table.add_row(f"{hit['score']:.3f}", hit["id"], hit["text"][:120], json.dumps(hit["metadata"]))
    console.print(table)


@app.command()
def ask(question: str, k: int = typer.Option(4, "--k", "-k"), memory: str = MemoryOpt, as_json: bool = JsonOpt) -> None:
    """Answer QUESTION from a memory with the platform's language model, citing the passages used (needs a
    model: one served on the platform's gateway, or CXMPUTE_LLM_BASE_URL)."""
    out = _invoke("memory.ask", {"memory": memory, "question": question, "k": k})
    if as_json:
        console.print_json(json.dumps(out))
        return
    console.print(out["answer"])
    console.print(f"[dim]sources: {', '.join(out['passage_ids']) or 'none'}[/dim]", overflow="fold")


@app.command("ls")
def list_(
    memory: str | None = typer.Argument(None, help="A memory to list the items of; all memories if empty"),
    offset: int = typer.Option(0, "--offset", min=0),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_json: bool = JsonOpt,
) -> None:
    """List your memories, or the items of one memory."""
    with PlatformClient() as platform:
        if memory is None:
            result = platform.get("/v1/memories")
        else:
            result = platform.get(
                f"/v1/memories/{quote(memory, safe='')}/items", params={"offset": offset, "limit": limit}
            )
    if as_json:
        console.print_json(json.dumps(result))
        return
    if memory is None:
        table = _table("memory", "items", fold=("memory",))
        for info in result:
            table.add_row(info["name"], str(info["count"]))
    else:
        items = result["items"]
        table = _table(
            "id",
            "document",
            "text",
            "metadata",
            fold=("id", "document"),
            caption=f"{result['offset'] + 1}-{result['offset'] + len(items)} of {result['total']}",
        )
        for item in items:
            table.add_row(item["id"], item.get("document_id") or "", item["text"][:100], json.dumps(item["metadata"]))
    console.print(table)
