"""Workflow engine: a compiled fan-out workflow vs a hand-written Prefect flow doing the same work, at several
widths, both on one real Prefect server in this run; and validate+compile of a generated 1,000-node workflow.

Like for like: both sides render every template through the platform's template worker (agxnt.templating, as
the io.template agent does), persist every task's result in Prefect's result storage under a key of its inputs
scoped to the flow run, and run the input as a task of its own. What the compiled side adds is the engine:
the document as a flow parameter, validation, one generic node task per node (agent lookup, input and output
validation, the node's record with its inputs and timings, the cancellation watch).

Sizes: CXMPUTE_BENCH_FLOW_WIDTHS (16,200,1000) and CXMPUTE_BENCH_FLOW_REPEATS (3).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.results import table, write_section

WIDTHS = [int(w) for w in os.environ.get("CXMPUTE_BENCH_FLOW_WIDTHS", "16,200,1000").split(",")]
REPEATS = int(os.environ.get("CXMPUTE_BENCH_FLOW_REPEATS", "3"))
BIG = 1000


def fan_document(width: int) -> dict:
    """input → `width` template nodes in parallel → one join."""
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
    return {
        "name": "fan",
        "inputs": {"x": {"default": "hello"}},
        "outputs": {"out": {"node": "join", "field": "text"}},
        "nodes": nodes,
        "edges": edges,
    }


def chain_document(n: int) -> dict:
    nodes = [{"id": f"n{i}", "agent": "io.template", "params": {"template": "{{ x }}."}} for i in range(n)]
    nodes[0]["params"]["variables"] = {"x": "seed"}
    edges = [
        {"source": f"n{i}", "source_field": "text", "target": f"n{i + 1}", "target_field": "variables.x"}
        for i in range(n - 1)
    ]
    return {"name": "big", "nodes": nodes, "edges": edges}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet(server_pid: int, window: float = 0.3, timeout: float = 120.0) -> None:
    """Wait until the Prefect server is idle: it records task-run states from events after a flow run returns,
    for seconds after a wide one, and that work belongs to the run that caused it, not to the next one."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        before = cpu_s(server_pid)
        time.sleep(window)
        if cpu_s(server_pid) - before < 0.05 * window:
            return


def measure(call, server_pid: int) -> tuple[float, float, object]:
    """Wall seconds of one call on an idle server, and CPU seconds of this process plus the Prefect server's
    until the server is idle again (the run's own event backlog included, none of another run's)."""
    quiet(server_pid)
    cpu, server, t = time.process_time(), cpu_s(server_pid), time.perf_counter()
    out = call()
    wall = time.perf_counter() - t
    quiet(server_pid)
    return wall, time.process_time() - cpu + cpu_s(server_pid) - server, out


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-flows-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    from cxmpute.settings import apply_environment_defaults

    apply_environment_defaults()
    from prefect import flow, task

    from agxnt.templating import render_template
    from cxmpute.ports import free_port
    from cxmpute.settings import get_settings
    from flows.engine import compile_workflow
    from flows.server import start_server, stop_server, use_api
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
    rows = []
    try:

        @task(persist_result=True)
        def take(value: str) -> str:
            return value

        @task(persist_result=True)
        async def render(template: str, variables: dict) -> str:
            return await render_template(template, variables, get_settings())

        @flow(persist_result=True)
        def handwritten(x: str, width: int) -> str:
            src = take.submit(x)
            parts = [render.submit(f"{i}:{{{{ x }}}}", {"x": src}) for i in range(width)]
            join = "{{ " + " }}|{{ ".join(f"v{i}" for i in range(width)) + " }}"
            return render.submit(join, {f"v{i}": p for i, p in enumerate(parts)}).result()

        handwritten("warm", 2)
        compile_workflow(fan_document(2))({"x": "warm"})
        for width in WIDTHS:
            compiled = compile_workflow(fan_document(width))
            raw, ours = [], []
            for _ in range(REPEATS):  # interleaved so drift hits both alike
                wall, cpu, expected = measure(lambda width=width: handwritten("hello", width), proc.pid)
                raw.append((wall, cpu))
                wall, cpu, got = measure(lambda compiled=compiled: compiled({"x": "hello"})["out"], proc.pid)
                ours.append((wall, cpu))
                assert got == expected, (got, expected)
            rw, ow = statistics.median(w for w, _ in raw), statistics.median(w for w, _ in ours)
            rc, oc = statistics.median(c for _, c in raw), statistics.median(c for _, c in ours)
            rows.append(
                [str(width), f"{rw:.2f}", f"{ow:.2f}", f"{ow / rw:.2f}", f"{rc:.2f}", f"{oc:.2f}", f"{oc / rc:.2f}"]
            )
    finally:
        stop_server(proc)

    p, f = statistics.median(parse), statistics.median(full)
    write_section(
        "Workflow engine",
        "\n\n".join(
            [
                f"Fan-out workflow: 1 input → N template nodes in parallel → 1 join (N + 2 tasks), median of {REPEATS} "
                "runs, compiled and hand-written interleaved, on one local Prefect server (SQLite). "
                "The hand-written flow "
                "does the same work: the input as a task, every template rendered by the template worker, every result "
                "persisted under a key of its inputs scoped to the run. Each run starts on an idle server: the server "
                "records task-run states from events for seconds after a wide flow run returns, and without the wait "
                "that backlog lands on whichever side runs next. CPU is this process's plus the Prefect server's until "
                "the server is idle again (the template workers' is the same on both sides and not counted); on a "
                f"loaded machine compare the CPU ratio. Load average at the end: {os.getloadavg()[0]:.1f}.",
                table(
                    [
                        "N",
                        "hand-written s",
                        "compiled s",
                        "wall ratio",
                        "hand-written CPU s",
                        "compiled CPU s",
                        "CPU ratio",
                    ],
                    rows,
                ),
                f"Generated {BIG}-node workflow (a chain of templates): median of 5.",
                table(
                    ["what", "median ms", "ratio"],
                    [
                        ["parse document only (baseline)", f"{p * 1000:.1f}", "1.00"],
                        ["validate + compile", f"{f * 1000:.1f}", f"{f / p:.1f}"],
                    ],
                ),
            ]
        ),
    )


if __name__ == "__main__":
    main()
