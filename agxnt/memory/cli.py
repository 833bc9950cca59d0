"""`cxmpute memory write|search|ask|ls`: the memory agents from the command line, as the local owner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from agxnt.agent import Agent
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.memory.agents import AskMemory, SearchMemory, WriteMemory

app = typer.Typer(help="Store knowledge in named memories, search it and ask questions about it.",
                  no_args_is_help=True)
console = Console()

MemoryOpt = typer.Option("default", "--memory", "-m", help="Name of the memory")
OwnerOpt = typer.Option("local", "--owner", help="Account whose memories to use")
JsonOpt = typer.Option(False, "--json", help="Print the raw JSON output")


def _run(agent: type[Agent], payload: dict[str, Any], owner: str) -> BaseModel:
    try:
        return asyncio.run(agent()(payload, AgentContext(owner=owner)))
    except AgentError as exc:
        where = f" ({exc.field})" if exc.field else ""
        console.print(f"[red]error{where}:[/red] {exc.message}")
        raise typer.Exit(2) from None
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]error ({'.'.join(str(p) for p in err['loc'])}):[/red] {err['msg']}")
        raise typer.Exit(2) from None


def _metadata(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--meta")
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
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--filter") from None


@app.command()
def write(
    text: str | None = typer.Argument(None, help="Text to remember"),
    files: list[Path] = typer.Option([], "--file", "-f", exists=True, dir_okay=False, help="Text files to store"),
    meta: list[str] = typer.Option([], "--meta", help="Metadata key=value for every document"),
    memory: str = MemoryOpt, owner: str = OwnerOpt, as_json: bool = JsonOpt,
) -> None:
    """Store a text and/or text files (one document each, id = file name)."""
    documents = [{"id": p.name, "text": p.read_text(errors="replace"), "metadata": {"source": str(p)}}
                 for p in files]
    if text is None and not documents:
        raise typer.BadParameter("give a text or --file", param_hint="TEXT")
    out = _run(WriteMemory, {"memory": memory, "text": text, "documents": documents, "metadata": _metadata(meta)},
               owner)
    if as_json:
        console.print_json(out.model_dump_json())
        return
    console.print(f"stored {out.documents} document(s) as {out.chunks} item(s) in memory {memory!r}")
    for item_id in out.ids:
        console.print(f"  {item_id}")


@app.command()
def search(query: str, k: int = typer.Option(5, "--k", "-k"), filter: str | None = typer.Option(None, "--filter"),
           memory: str = MemoryOpt, owner: str = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """Find the passages closest in meaning to QUERY."""
    out = _run(SearchMemory, {"memory": memory, "query": query, "k": k, "filter": _filter(filter)}, owner)
    if as_json:
        console.print_json(out.model_dump_json())
        return
    table = Table("score", "id", "text", "metadata")
    for hit in out.results:
        table.add_row(f"{hit.score:.3f}", hit.id, hit.text[:120], json.dumps(hit.metadata))
    console.print(table)


@app.command()
def ask(question: str, k: int = typer.Option(4, "--k", "-k"), memory: str = MemoryOpt, owner: str = OwnerOpt,
        as_json: bool = JsonOpt) -> None:
    """Answer QUESTION from a memory with the platform LLM, citing the passages used."""
    out = _run(AskMemory, {"memory": memory, "question": question, "k": k}, owner)
    if as_json:
        console.print_json(out.model_dump_json())
        return
    console.print(out.answer)
    console.print(f"[dim]sources: {', '.join(out.passage_ids) or 'none'}[/dim]")


@app.command("ls")
def list_(memory: str | None = typer.Argument(None, help="A memory to list the items of; all memories if empty"),
          offset: int = typer.Option(0, "--offset"), limit: int = typer.Option(20, "--limit"),
          owner: str = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """List your memories, or the items of one memory."""
    from agxnt.context import default_services

    store = default_services().memory
    try:
        result: BaseModel | list = (store.list_items(owner, memory, offset, limit) if memory
                                    else store.list_memories(owner))
    except AgentError as exc:
        console.print(f"[red]error ({exc.field}):[/red] {exc.message}")
        raise typer.Exit(2) from None
    if as_json:
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else [m.model_dump() for m in result]
        console.print_json(json.dumps(data))
        return
    if memory is None:
        table = Table("memory", "items")
        for info in result:
            table.add_row(info.name, str(info.count))
    else:
        table = Table("id", "document", "text", "metadata", caption=f"{result.offset + 1}-"
                      f"{result.offset + len(result.items)} of {result.total}")
        for item in result.items:
            table.add_row(item.id, item.document_id, item.text[:100], json.dumps(item.metadata))
    console.print(table)
