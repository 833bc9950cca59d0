"""Notebook: build a Jupyter notebook from cells, execute it with nbclient inside the sandbox, store the
executed .ipynb. The kernel runs user code, so it never starts in the platform process."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError, as_agent_errors
from agxnt.gen.files import GeneratedFile, load, one_of, stem, store
from compute.runtimes import Limits, SandboxSpec
from cxmpute.errors import CxmputeError

MAX_CELLS = 500
MAX_NOTEBOOK_BYTES = 64 * 2**20
MAX_OUTPUT_CHARS = 10_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks
NOTEBOOK = "notebook.ipynb"
REPORT = ".cx-notebook.json"

# Runs inside the sandbox: nbclient starts an ipykernel there and executes every cell in order.
RUNNER = """
import json, sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

nb_path, report_path, timeout, allow_errors = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
nb = nbformat.read(nb_path, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                        resources={"metadata": {"path": "."}})
status, error = "ok", None
try:
    client.execute()
except CellTimeoutError as exc:
    status, error = "timeout", str(exc)[-2000:]
except CellExecutionError as exc:
    status, error = "error", str(exc)[-2000:]
except DeadKernelError as exc:
    status, error = "killed", str(exc)[-2000:]
nbformat.write(nb, nb_path)
with open(report_path, "w") as f:
    json.dump({"status": status, "error": error}, f)
"""

_ENV = {
    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
    "JUPYTER_DATA_DIR": "/tmp/jupyter-data",
    "IPYTHONDIR": "/tmp/ipython",
    "JUPYTER_PLATFORM_DIRS": "1",
    "MPLBACKEND": "Agg",
}


class _Report(BaseModel):
    status: Literal["ok", "error", "timeout", "killed"]
    error: str | None = None


class NotebookCell(BaseModel):
    kind: Literal["code", "markdown"] = "code"
    source: str = Field(..., max_length=1_000_000)


class CellResult(BaseModel):
    index: int
    kind: Literal["code", "markdown", "raw"]
    execution_count: int | None = None
    status: Literal["ok", "error", "not_run"] = Field(description="not_run: after a failed cell, or markdown")
    outputs: list[str] = Field(default_factory=list, description="Streams, results and errors, as text")


def build_notebook(cells: list[NotebookCell], parameters: dict[str, Any] | None):
    import nbformat.v4 as nbf

    notebook = nbf.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters:
        cell = nbf.new_code_cell(f"import json\nparameters = json.loads({json.dumps(json.dumps(parameters))})")
        cell.metadata["tags"] = ["parameters"]
        notebook.cells.append(cell)
    for c in cells:
        notebook.cells.append(nbf.new_code_cell(c.source) if c.kind == "code" else nbf.new_markdown_cell(c.source))
    return notebook


def _text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        text = output.get("text", "")
    elif kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        text = data.get("text/plain") or next((f"<{m}>" for m in data), "")
    elif kind == "error":
        text = f"{output.get('ename')}: {_ANSI.sub('', str(output.get('evalue')))}"
    else:
        text = ""
    text = "".join(text) if isinstance(text, list) else str(text)
    return text[:MAX_OUTPUT_CHARS]


def summarise(notebook) -> list[CellResult]:
    results = []
    for index, cell in enumerate(notebook.cells):
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        if cell.cell_type != "code" or cell.get("execution_count") is None:
            status = "not_run"
        else:
            status = "error" if any(o.get("output_type") == "error" for o in outputs) else "ok"
        results.append(
            CellResult(
                index=index,
                kind=cell.cell_type,
                execution_count=cell.get("execution_count"),
                status=status,
                outputs=[t for t in map(_text, outputs) if t],
            )
        )
    return results


class Notebook(Agent):
    """Build a Jupyter notebook from cells (or take a stored one), execute it in the sandbox, store the result."""

    id = "gen.notebook"
    name = "Notebook"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=1024, runtime="sandbox")

    class Input(BaseModel):
        cells: list[NotebookCell] | None = Field(None, max_length=MAX_CELLS, description="Cells, in order")
        notebook_cid: str | None = Field(None, description="An .ipynb in the caller's storage, to execute")
        parameters: dict[str, Any] | None = Field(
            None, description="JSON values the code sees as `parameters` (a first cell tagged 'parameters')"
        )
        allow_errors: bool = Field(False, description="Keep executing the cells after one fails")
        cell_timeout_seconds: float = Field(60.0, gt=0, le=600, description="Limit of one cell")
        timeout_seconds: float = Field(300.0, gt=0, le=3600, description="Limit of the whole notebook")
        memory_mb: int = Field(1024, ge=256, le=8192, description="Memory limit")
        cpu_seconds: int = Field(300, ge=1, le=3600, description="CPU time limit")
        disk_mb: int = Field(128, ge=16, le=4096, description="Scratch directory size")
        fail_on_error: bool = Field(False, description="Fail the node when a cell fails, instead of reporting it")
        filename: str = Field("notebook", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        notebook: GeneratedFile
        status: Literal["ok", "error", "timeout", "killed"]
        error: str | None = None
        cells: list[CellResult]
        runtime: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        import nbformat

        if one_of(input, "cells", "notebook_cid") == "cells":
            if not input.cells:
                raise AgentError("cells is empty", field="cells", status_code=422)
            notebook = build_notebook(input.cells, input.parameters)
        else:
            raw = await load(ctx, input.notebook_cid, "notebook_cid")
            try:
                notebook = nbformat.reads(raw.decode(), as_version=4)
                nbformat.validate(notebook)
            except Exception as exc:  # nbformat raises JSON, Unicode and schema errors alike for a bad file
                raise AgentError(
                    f"notebook_cid is not a valid notebook: {str(exc)[:300]}", field="notebook_cid", status_code=422
                ) from None
            if input.parameters:
                notebook.cells[:0] = build_notebook([], input.parameters).cells
        with as_agent_errors():
            runtime = ctx.services.runtimes.get(None)
            spec = SandboxSpec(
                env=_ENV,
                limits=Limits(
                    wall_seconds=input.timeout_seconds,
                    cpu_seconds=input.cpu_seconds,
                    memory_mb=input.memory_mb,
                    disk_mb=input.disk_mb,
                    file_size_mb=64,
                    output_bytes=65536,
                ),
            )
            async with await runtime.start(spec) as sandbox:
                sandbox.put_file(NOTEBOOK, nbformat.writes(notebook).encode())
                done = await sandbox.exec(
                    [
                        *runtime.python_argv(),
                        "-c",
                        RUNNER,
                        NOTEBOOK,
                        REPORT,
                        str(input.cell_timeout_seconds),
                        "1" if input.allow_errors else "0",
                    ]
                )
                report = self._report(sandbox)
                executed = sandbox.get_file(NOTEBOOK, max_bytes=MAX_NOTEBOOK_BYTES) if report else None
        if report is None:
            status = "timeout" if done.timed_out else "killed"
            why = (
                "ran longer than its timeout_seconds"
                if done.timed_out
                else f"was stopped (exit {done.exit_code}): {done.stderr.decode(errors='replace')[-500:]}"
            )
            report, executed = _Report(status=status, error=f"the notebook {why}"), nbformat.writes(notebook).encode()
        result = self._executed(executed)
        error = _ANSI.sub("", report.error) if report.error else None
        if input.fail_on_error and report.status != "ok":
            raise AgentError(f"the notebook failed ({report.status}): {error}", field="cells", status_code=422)
        stored = await store(ctx, executed, f"{stem(input.filename, 'notebook')}.ipynb", "application/x-ipynb+json")
        return self.Output(
            notebook=stored, status=report.status, error=error, cells=summarise(result), runtime=runtime.name
        )

    @staticmethod
    def _report(sandbox) -> _Report | None:
        try:
            return _Report.model_validate_json(sandbox.get_file(REPORT, max_bytes=65536))
        except (CxmputeError, ValueError):
            return None

    @staticmethod
    def _executed(data: bytes):
        """The notebook the sandbox hands back; the code ran beside it and may have overwritten it."""
        import nbformat

        try:
            notebook = nbformat.reads(data.decode(), as_version=4)
            nbformat.validate(notebook)
        except Exception:  # nbformat raises JSON, Unicode and schema errors alike
            raise AgentError(
                f"the code replaced {NOTEBOOK} with something that is not a notebook", field="cells", status_code=422
            ) from None
        return notebook
