"""The engine at width: one cancellation watch for every node of a process, and wide fan-outs giving the
same answer as a hand-written flow would."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from flows import cancellation
from flows.cancel_watch import unless_cancelled
from flows.run_errors import NodeFailed


def _run_id() -> str:
    return f"test-{uuid.uuid4()}"


def test_work_that_ends_gives_its_result():
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert asyncio.run(unless_cancelled(work(), _run_id(), "n", "util.wait")) == "done"


def test_an_error_of_the_work_is_its_own():
    async def work() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(unless_cancelled(work(), _run_id(), "n", "util.wait"))


def test_cancelling_a_run_stops_the_work_of_each_of_its_nodes_after_its_cleanup():
    """Nodes on event loops of their own threads, as Prefect runs them; the other run's node is left alone."""
    doomed, spared = _run_id(), _run_id()
    cleaned: list[str] = []
    outcomes: dict[str, object] = {}

    async def work(name: str, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
            return "finished"
        finally:
            cleaned.append(name)

    def node(name: str, run_id: str, seconds: float) -> None:
        try:
            outcomes[name] = asyncio.run(unless_cancelled(work(name, seconds), run_id, name, "util.wait"))
        except NodeFailed as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=node, args=(f"a{i}", doomed, 30)) for i in range(3)]
    threads.append(threading.Thread(target=node, args=("b", spared, 0.5)))
    for t in threads:
        t.start()
    try:
        cancellation.request(doomed)
        for t in threads:
            t.join(10)
    finally:
        cancellation.forget(doomed)
    assert outcomes["b"] == "finished"
    for name in ("a0", "a1", "a2"):
        assert isinstance(outcomes[name], NodeFailed) and "the run was cancelled" in str(outcomes[name])
    assert sorted(cleaned) == ["a0", "a1", "a2", "b"]


def test_a_timeout_is_not_taken_for_a_cancelled_run():
    """The node's own task cancelled (as Prefect does at a node's timeout) propagates as a cancellation, even
    when the run is being cancelled too."""
    run_id = _run_id()

    async def node() -> None:
        cancellation.request(run_id)
        await asyncio.wait_for(unless_cancelled(asyncio.sleep(30), run_id, "n", "util.wait"), 0.05)

    try:
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(node())
    finally:
        cancellation.forget(run_id)


def test_a_wide_fan_out_joins_every_branch(prefect_api):
    from flows.engine import compile_workflow

    width = 40
    nodes = [{"id": "src", "agent": "io.input", "params": {"name": "x"}}]
    edges = []
    for i in range(width):
        nodes.append({"id": f"t{i}", "agent": "io.template", "params": {"template": f"{i}:{{{{ x }}}}"}})
        edges.append({"source": "src", "source_field": "value", "target": f"t{i}", "target_field": "variables.x"})
    nodes.append(
        {
            "id": "join",
            "agent": "io.template",
            "params": {"template": "{{ " + " }}|{{ ".join(f"v{i}" for i in range(width)) + " }}"},
        }
    )
    edges += [
        {"source": f"t{i}", "source_field": "text", "target": "join", "target_field": f"variables.v{i}"}
        for i in range(width)
    ]
    doc = {
        "name": "fan",
        "inputs": {"x": {"default": "hi"}},
        "outputs": {"out": {"node": "join", "field": "text"}},
        "nodes": nodes,
        "edges": edges,
    }
    assert compile_workflow(doc)({"x": "hi"}) == {"out": "|".join(f"{i}:hi" for i in range(width))}
