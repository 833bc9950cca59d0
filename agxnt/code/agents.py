"""Codexecution and Sequential Code: user code run in a runtime of the job's choice, never in-process."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError, as_agent_errors
from compute.runtimes import Limits, ResourceUsage, Runtime, SandboxSpec
from compute.runtimes.code import CONTROL_DIR, CodeResult, run_code
from cxmpute.errors import CxmputeError

MAX_INPUT_FILES = 100
MAX_PRODUCED_FILES = 50
MAX_PRODUCED_BYTES = 64 * 2**20


class CodeFile(BaseModel):
    """A file put in the scratch directory before the code runs: text, base64 bytes or a stored file's CID."""

    path: str = Field(..., min_length=1, max_length=255, description="Path relative to the working directory")
    text: str | None = None
    content_base64: str | None = None
    cid: str | None = Field(None, description="A file in the caller's storage")

    @model_validator(mode="after")
    def _one_source(self) -> CodeFile:
        if sum(v is not None for v in (self.text, self.content_base64, self.cid)) != 1:
            raise ValueError("give exactly one of text, content_base64 or cid")
        return self


class ProducedFile(BaseModel):
    path: str
    size: int
    cid: str = Field(description="The file in the caller's storage")


class SandboxOptions(BaseModel):
    """Where and with what the code runs; the fields every code agent shares."""

    runtime: str | None = Field(None, description="Runtime to run in: 'sandbox' (default) or 'container'")
    memory_mb: int = Field(512, ge=64, le=8192, description="Memory limit")
    cpu_seconds: int = Field(60, ge=1, le=3600, description="CPU time limit")
    disk_mb: int = Field(64, ge=1, le=4096, description="Scratch directory size")
    network: bool = Field(False, description="Grant outbound network access")

    def spec(self, wall_seconds: float) -> SandboxSpec:
        return SandboxSpec(
            network=self.network,
            limits=Limits(
                wall_seconds=wall_seconds, cpu_seconds=self.cpu_seconds, memory_mb=self.memory_mb, disk_mb=self.disk_mb
            ),
        )


def _runtime(ctx: AgentContext, name: str | None) -> Runtime:
    with as_agent_errors():
        return ctx.services.runtimes.get(name)


def _file_bytes(f: CodeFile, ctx: AgentContext) -> bytes:
    if f.text is not None:
        return f.text.encode()
    if f.content_base64 is not None:
        try:
            return base64.b64decode(f.content_base64, validate=True)
        except binascii.Error:
            raise AgentError(f"file {f.path!r}: content_base64 is not valid base64", field="files") from None
    try:
        return ctx.services.storage.get_bytes(f.cid, owner=ctx.owner)
    except Exception as exc:  # storage reports missing or foreign files with its own errors
        raise AgentError(
            f"file {f.path!r}: cannot read {f.cid}: {exc}", field="files", status_code=getattr(exc, "status_code", 400)
        ) from None


class Codexecution(Agent):
    """Run a Python or shell snippet in an isolated sandbox: stdout, stderr, exit code, result, files."""

    id = "code.exec"
    name = "Codexecution"
    family = "Code"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=512, runtime="sandbox")

    class Input(SandboxOptions):
        code: str = Field(
            ...,
            min_length=1,
            max_length=1_000_000,
            description="Python: the last expression (or a variable named result) is the result. "
            "Shell: write JSON to $RESULT_FILE for a result",
        )
        language: Literal["python", "shell"] = "python"
        inputs: dict[str, Any] = Field(
            default_factory=dict, description="JSON values: `inputs` in Python, the file $INPUTS_FILE in shell"
        )
        files: list[CodeFile] = Field(default_factory=list, max_length=MAX_INPUT_FILES)
        timeout_seconds: float = Field(30.0, gt=0, le=600, description="Wall-clock limit")
        collect_files: bool = Field(True, description="Store the files the code writes and return their CIDs")
        fail_on_error: bool = Field(False, description="Fail the node when the code fails, instead of reporting it")

    class Output(CodeResult):
        runtime: str
        files: list[ProducedFile] = Field(default_factory=list)
        files_truncated: bool = False

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        runtime = _runtime(ctx, input.runtime)
        given = {f.path: _file_bytes(f, ctx) for f in input.files}
        with as_agent_errors():
            async with await runtime.start(input.spec(input.timeout_seconds)) as sandbox:
                result = await run_code(
                    sandbox, runtime, input.code, language=input.language, inputs=input.inputs, files=given.items()
                )
                produced, truncated = self._collect(sandbox, given, ctx) if input.collect_files else ([], False)
        if input.fail_on_error and result.status != "ok":
            raise AgentError(
                f"the code failed ({result.status}): {result.error or result.stderr[-500:]}",
                field="code",
                status_code=422,
            )
        return self.Output(**result.model_dump(), runtime=runtime.name, files=produced, files_truncated=truncated)

    @staticmethod
    def _collect(sandbox, given: dict[str, bytes], ctx: AgentContext) -> tuple[list[ProducedFile], bool]:
        produced: list[ProducedFile] = []
        total = 0
        for info in sandbox.list_files():
            if info.path.startswith(CONTROL_DIR + "/"):
                continue
            if len(produced) >= MAX_PRODUCED_FILES or total + info.size > MAX_PRODUCED_BYTES:
                return produced, True
            try:
                data = sandbox.get_file(info.path, max_bytes=MAX_PRODUCED_BYTES - total)
            except CxmputeError:  # removed or swapped for a link since it was listed: not a produced file
                continue
            if given.get(info.path) == data:
                continue
            total += len(data)
            stored = ctx.services.storage.put_bytes(data, owner=ctx.owner, name=info.path.rsplit("/", 1)[-1])
            produced.append(ProducedFile(path=info.path, size=len(data), cid=stored.file.cid))
        return produced, False


class CellOutput(BaseModel):
    index: int
    status: Literal["ok", "error", "timeout", "killed", "skipped"]
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    result: Any = None
    error: str | None = None
    usage: ResourceUsage = Field(default_factory=ResourceUsage)


class SequentialCode(Agent):
    """A persistent Python session: cells run one after another and share variables, imports and files."""

    id = "code.sequential"
    name = "Sequential Code"
    family = "Code"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=512, runtime="sandbox")

    class Input(SandboxOptions):
        cells: list[str] = Field(
            default_factory=list,
            max_length=500,
            description="Python cells, run in order; each cell's last expression is its result",
        )
        inputs: dict[str, Any] | None = Field(
            None,
            description="JSON values the cells see as `inputs` (kept by the session until a later call gives new ones)",
        )
        session_id: str | None = Field(None, description="Continue this open session instead of starting one")
        keep_open: bool = Field(False, description="Keep the session open after these cells for later calls")
        close: bool = Field(False, description="Close the session after these cells")
        cell_timeout_seconds: float = Field(30.0, gt=0, le=600)
        session_timeout_seconds: float = Field(
            600.0, gt=0, le=24 * 3600, description="An open session idle this long is closed"
        )
        stop_on_error: bool = Field(True, description="Skip the remaining cells after a failed one")

        @model_validator(mode="after")
        def _something_to_do(self):
            if not self.cells and not (self.session_id and self.close):
                raise ValueError("give at least one cell (or a session_id with close=true)")
            return self

    class Output(BaseModel):
        session_id: str
        runtime: str
        open: bool = Field(description="Whether the session stays open for more cells")
        cells: list[CellOutput]

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        sessions = ctx.services.runtimes.sessions
        with as_agent_errors():
            if input.session_id:
                session = sessions.get(input.session_id, ctx.owner)
            else:
                runtime = _runtime(ctx, input.runtime)
                session = await sessions.open(
                    ctx.owner, runtime, input.spec(input.cell_timeout_seconds + 5), input.session_timeout_seconds
                )
        outputs: list[CellOutput] = []
        failed = False
        for index, code in enumerate(input.cells):
            if failed and input.stop_on_error:
                outputs.append(CellOutput(index=index, status="skipped", error="an earlier cell failed"))
                continue
            ctx.check_cancelled()
            result = await session.run(code, input.cell_timeout_seconds, input.inputs if index == 0 else None)
            outputs.append(CellOutput(index=index, **result.model_dump(exclude={"exit_code"})))
            failed = failed or result.status != "ok"
            ctx.progress((index + 1) / len(input.cells))
        keep = (input.keep_open or input.session_id is not None) and not input.close and session.alive
        if not keep:
            with as_agent_errors():
                await sessions.close(session.id, ctx.owner)
        return self.Output(session_id=session.id, runtime=session.runtime.name, open=keep, cells=outputs)
