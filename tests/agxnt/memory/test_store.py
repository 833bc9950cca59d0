"""The store itself: persistence across a process restart, the Chroma server path, names and paging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agxnt.memory.embeddings import SentenceTransformerEmbedding, default_model_path
from agxnt.memory.items import DocumentIn
from agxnt.memory.store import MemoryStore
from cxmpute.ports import free_port
from cxmpute.settings import Settings

REPO = Path(__file__).resolve().parents[3]

WRITE = """
import asyncio, json, sys
from agxnt.context import AgentContext
from agxnt.memory.agents import WriteMemory, SequentialMemory
ctx = AgentContext(owner="0xPersist")
asyncio.run(WriteMemory()({"memory": "diary", "documents": [
    {"id": "d1", "text": "The lighthouse keeper feeds the seagulls at dawn."},
    {"id": "d2", "text": "Invoices are due on the first Monday of the month."}]}, ctx))
asyncio.run(SequentialMemory()({"thread": "chat", "action": "append", "message": "remember me"}, ctx))
"""

READ = """
import asyncio, json
from agxnt.context import AgentContext
from agxnt.memory.agents import SearchMemory, SequentialMemory
ctx = AgentContext(owner="0xPersist")
hits = asyncio.run(SearchMemory()({"memory": "diary", "query": "when are bills due", "k": 1}, ctx))
thread = asyncio.run(SequentialMemory()({"thread": "chat"}, ctx))
print(json.dumps({"ids": hits.ids, "thread": [e.content for e in thread.entries]}))
"""


def _python(code: str, home: Path, **env: str) -> str:
    environ = {**os.environ, "CXMPUTE_HOME": str(home), **env}
    environ.pop("CXMPUTE_LLM_MODEL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_data_survives_a_process_restart(tmp_path):
    _python(WRITE, tmp_path)
    assert (tmp_path / "chroma").is_dir()
    out = json.loads(_python(READ, tmp_path).strip().splitlines()[-1])
    assert out == {"ids": ["d2"], "thread": ["remember me"]}


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = Path(sys.executable).parent / "chroma"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(tmp_path_factory.mktemp("chroma-server")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for the server to come up
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("chroma run exited early")
            time.sleep(0.1)
        else:
            raise RuntimeError("chroma server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chroma_server_via_cxmpute_chroma_url(chroma_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CXMPUTE_CHROMA_URL", chroma_server)
    store = MemoryStore.from_settings(Settings(home=tmp_path))
    assert store.client.get_settings().chroma_api_impl.endswith("FastAPI")  # the HTTP client, not embedded
    ids = store.write(
        "0xServer",
        "m",
        [
            DocumentIn(id="x", text="Server side vector search works."),
            DocumentIn(id="y", text="Unrelated note on gardening."),
        ],
    )
    assert ids == ["x", "y"]
    assert not (tmp_path / "chroma").exists()  # nothing embedded: the data lives in the server
    # a fresh client (a restarted process) sees the same data through the server
    again = MemoryStore.from_settings(Settings(home=tmp_path, chroma_url=chroma_server))
    assert again.search("0xServer", "m", "vector search", k=1)[0].id == "x"
    assert [m.name for m in again.list_memories("0xServer")] == ["m"]
    assert again.list_memories("0xOther") == []
    assert again.clear("0xServer", "m") == 2


def test_short_memory_names_work_despite_chromas_minimum(ctx_for, owners):
    store = ctx_for(owners[0]).services.memory
    store.write(owners[0], "a", [DocumentIn(text="one letter memory")])
    assert [m.name for m in store.list_memories(owners[0])] == ["a"]
    assert store.search(owners[0], "a", "letter", k=1)[0].text == "one letter memory"


def test_list_items_pages_and_filters(ctx_for, owners):
    store = ctx_for(owners[0]).services.memory
    store.write(
        owners[0],
        "pages",
        [DocumentIn(id=f"n{i}", text=f"note number {i}", metadata={"even": i % 2 == 0}) for i in range(25)],
    )
    first = store.list_items(owners[0], "pages", offset=0, limit=10)
    rest = store.list_items(owners[0], "pages", offset=10, limit=100)
    assert first.total == 25 and len(first.items) == 10 and len(rest.items) == 15
    assert {i.id for i in first.items} | {i.id for i in rest.items} == {f"n{i}" for i in range(25)}
    even = store.list_items(owners[0], "pages", where={"even": True})
    assert even.total == 13


def test_embedding_function_is_ours_and_offline():
    ef = SentenceTransformerEmbedding()
    assert ef.model == default_model_path()
    assert SentenceTransformerEmbedding.build_from_config(ef.get_config()).model == ef.model
    vectors = ef(["a cat", "a kitten", "stock market"])
    assert len(vectors[0]) == ef.dimensions == 384
    close, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert close > far


def test_collections_are_created_with_our_embedding_function(ctx_for, owners):
    store = ctx_for(owners[0]).services.memory
    store.write(owners[0], "ef", [DocumentIn(text="x")])
    col = store._collection(owners[0], "ef")
    assert col.configuration_json["embedding_function"]["name"] == "cxmpute-sentence-transformers"


def test_unreachable_chroma_server_is_a_503(tmp_path):
    from agxnt.errors import AgentError

    with pytest.raises(AgentError) as err:
        MemoryStore.from_settings(Settings(home=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}"))
    assert err.value.status_code == 503 and "unreachable" in err.value.message
