"""Workflow engine: a compiled workflow vs the same tasks as a hand-written Prefect flow, both on one
real Prefect server in this run; and validate+compile of a generated 1,000-node workflow."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.results import table, write_section

WIDTH = int(os.environ.get("CXMPUTE_BENCH_FLOW_WIDTH", "16"))
REPEATS = int(os.environ.get("CXMPUTE_BENCH_FLOW_REPEATS", "5"))
BIG = 1000


def fan_document(width: int) -> dict:
    """input → `width` template nodes in parallel → one join."""
    nodes = [{"id": "src", "agent": "io.input", "params": {"name": "x"}}]
    edges = []
    for i in range(width):
        nodes.append({"id": f"t{i}", "agent": "io.template", "params": {"template": f"{i}:{{{{ x }}}}"}})
        edges.append({"source": "src", "source_field": "value", "target": f"t{i}", "target_field": "variables.x"})
    nodes.append({"id": "join", "agent": "io.template",
                  "params": {"template": "{{ " + " }}|{{ ".join(f"v{i}" for i in range(width)) + " }}"}})
    edges += [{"source": f"t{i}", "source_field": "text", "target": "join", "target_field": f"variables.v{i}"}
              for i in range(width)]
    return {"name": "fan", "inputs": {"x": {"default": "hello"}}, "outputs": {"out": {"node": "join", "field": "text"}},
            "nodes": nodes, "edges": edges}


def chain_document(n: int) -> dict:
    nodes = [{"id": f"n{i}", "agent": "io.template", "params": {"template": "{{ x }}."}} for i in range(n)]
    nodes[0]["params"]["variables"] = {"x": "seed"}
    edges = [{"source": f"n{i}", "source_field": "text", "target": f"n{i + 1}", "target_field": "variables.x"}
             for i in range(n - 1)]
    return {"name": "big", "nodes": nodes, "edges": edges}


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-flows-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    from jinja2.sandbox import SandboxedEnvironment
    from prefect import flow, task

    from flows.engine import compile_workflow
    from flows.server import free_port, start_server, stop_server, use_api
    from flows.spec import Workflow
    from flows.validate import validate

    # (b) validate + compile a generated 1,000-node workflow, against parsing it alone.
    big = chain_document(BIG)
    parse = []
    full = []
    for _ in range(5):
        t = time.perf_counter()
        Workflow.model_validate(big)
        parse.append(time.perf_counter() - t)
        t = time.perf_counter()
        plan, problems = validate(big)
        assert not problems
        compile_workflow(big)
        full.append(time.perf_counter() - t)

    port = free_port()
    proc = start_server(home / "prefect", port)
    use_api(f"http://127.0.0.1:{port}/api")
    try:
        env = SandboxedEnvironment()

        @task(persist_result=True)
        def render(template: str, variables: dict) -> str:
            return env.from_string(template).render(**variables)

        @flow(persist_result=True)
        def handwritten(x: str, width: int) -> str:
            parts = [render.submit(f"{i}:{{{{ x }}}}", {"x": x}) for i in range(width)]
            values = {f"v{i}": p.result() for i, p in enumerate(parts)}
            return render("{{ " + " }}|{{ ".join(f"v{i}" for i in range(width)) + " }}", values)

        compiled = compile_workflow(fan_document(WIDTH))
        ours, raw = [], []
        handwritten("warm", 2)
        compiled({"x": "warm"})
        for _ in range(REPEATS):  # interleaved so drift hits both alike
            t = time.perf_counter()
            expected = handwritten("hello", WIDTH)
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = compiled({"x": "hello"})["out"]
            ours.append(time.perf_counter() - t)
            assert got == expected, (got, expected)
    finally:
        stop_server(proc)

    r, o = statistics.median(raw), statistics.median(ours)
    p, f = statistics.median(parse), statistics.median(full)
    write_section("Workflow engine", "\n\n".join([
        f"Fan-out workflow: 1 input → {WIDTH} template nodes in parallel → 1 join ({WIDTH + 2} tasks), "
        f"median of {REPEATS} runs on one local Prefect server (SQLite).",
        table(["what", "median s", "ratio"], [
            ["hand-written Prefect flow (baseline)", f"{r:.3f}", "1.00"],
            ["compiled workflow document", f"{o:.3f}", f"{o / r:.2f}"],
        ]),
        f"Generated {BIG}-node workflow (a chain of templates): median of 5.",
        table(["what", "median ms", "ratio"], [
            ["parse document only (baseline)", f"{p * 1000:.1f}", "1.00"],
            ["validate + compile", f"{f * 1000:.1f}", f"{f / p:.1f}"],
        ]),
    ]))


if __name__ == "__main__":
    main()
