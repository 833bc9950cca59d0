"""The warm pool: sandboxed interpreters that have imported a function's package and wait for events.

An interpreter is started (the cold path) when a function version has none idle, reused for every later
invocation of that version (the warm path), and closed once idle longer than the pool's idle time, so a
function nobody calls holds no process (scale to zero). Each function runs at most ``concurrency``
invocations at once; further ones wait their turn. An invocation past its timeout kills its interpreter;
one that dies or runs out of memory is never reused.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import json
import math
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from compute.runtimes import BackgroundProcess, Limits, Runtime, Sandbox, SandboxSpec
from cxmpute.logging import get_logger

log = get_logger(__name__)

RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text()
CONTROL_DIR = ".cxmpute"
PACKAGE_DIR = "pkg"
LOAD_TIMEOUT_S = 60.0
LOG_CAP = 64 * 1024
RESULT_CAP = 8 * 2**20
Kind = Literal["ok", "error", "timeout", "memory", "killed"]


class FunctionSpec(BaseModel):
    """One deployed version as the pool runs it."""

    owner: str
    name: str
    version: int
    cid: str = Field(description="The package (a zip) in storage")
    handler: str = Field("handler:handler", description="module:function")
    memory_mb: int = Field(256, ge=64, le=8192)
    timeout_s: float = Field(30.0, gt=0, le=900)
    concurrency: int = Field(4, ge=1, le=256)

    @property
    def function_key(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def version_key(self) -> str:
        return f"{self.owner}/{self.name}@{self.version}:{self.cid}"


class Outcome(BaseModel):
    """What one invocation did, as the pool saw it."""

    kind: Kind
    result: Any = None
    error: str | None = None
    cold: bool
    duration_ms: float = Field(description="Time inside the handler (the billed execution)")
    latency_ms: float = Field(description="From the pool taking the invocation to its answer, queueing excluded")
    queued_ms: float = Field(description="Time spent waiting for a free slot under the concurrency limit")
    max_rss_mb: float = 0.0
    stdout: str = ""
    stderr: str = ""
    pid: int | None = Field(None, description="The interpreter's process id on the host (warm reuse keeps it)")


class Interpreter:
    """One sandboxed, started interpreter with one function version imported."""

    def __init__(self, spec: FunctionSpec, sandbox: Sandbox, process: BackgroundProcess):
        self.spec, self.sandbox, self.process = spec, sandbox, process
        self.last_used = time.monotonic()
        self.calls = 0
        self.usable = True
        self.notice = asyncio.Event()
        loop = asyncio.get_running_loop()
        process.on_stdout = lambda _: loop.call_soon_threadsafe(self.notice.set)

    @property
    def pid(self) -> int | None:
        proc = getattr(self.process, "proc", None)
        return getattr(proc, "pid", None)

    def _answer(self, name: str) -> dict[str, Any] | None:
        try:
            raw = self.sandbox.get_file(f"{CONTROL_DIR}/{name}", max_bytes=RESULT_CAP + 1)
        except Exception:  # not written yet
            return None
        if len(raw) > RESULT_CAP:  # answers are renamed into place whole, so this one is complete and too big
            return {"kind": "error", "error": f"the handler's result is larger than {RESULT_CAP // 2**20} MB"}
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _log(self, name: str) -> str:
        try:
            data = self.sandbox.get_file(f"{CONTROL_DIR}/{name}", max_bytes=LOG_CAP + 1)
        except Exception:
            return ""
        self.sandbox.remove_file(f"{CONTROL_DIR}/{name}")
        text = data[:LOG_CAP].decode("utf-8", errors="replace")
        return text + ("\n[output truncated]" if len(data) > LOG_CAP else "")

    async def wait_for(self, name: str, timeout: float) -> dict[str, Any] | None:
        """The interpreter's answer file, looked for on each notice it writes (and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            found = self._answer(name)
            if found is not None:
                return found
            if not self.process.alive():
                return self._answer(name)
            try:
                await asyncio.wait_for(self.notice.wait(), timeout=min(0.05, remaining))
            except TimeoutError:
                pass
            self.notice.clear()
        return None

    async def call(self, event: Any, cold: bool, queued_ms: float) -> Outcome:
        spec = self.spec
        call_id = f"call-{self.calls}-{uuid.uuid4().hex[:8]}"
        self.calls += 1
        started = time.perf_counter()
        self.notice.clear()
        self.process.send(
            (json.dumps({"id": call_id, "event": event, "deadline_ms": int(spec.timeout_s * 1000)}) + "\n").encode()
        )
        try:
            answer = await self.wait_for(f"{call_id}.json", spec.timeout_s)
        except asyncio.CancelledError:
            self.usable = False  # still busy with an invocation nobody waits for
            raise
        latency = (time.perf_counter() - started) * 1000
        stdout, stderr = self._log(f"{call_id}.stdout"), self._log(f"{call_id}.stderr")
        self.sandbox.remove_file(f"{CONTROL_DIR}/{call_id}.json")
        self.last_used = time.monotonic()
        common = {
            "cold": cold,
            "queued_ms": queued_ms,
            "latency_ms": latency,
            "stdout": stdout,
            "stderr": stderr,
            "pid": self.pid,
        }
        if answer is None:
            self.usable = False
            if self.process.alive():
                return Outcome(
                    kind="timeout",
                    duration_ms=latency,
                    **common,
                    error=f"the function ran longer than its timeout of {spec.timeout_s:g} s and was stopped",
                )
            return Outcome(
                kind="killed",
                duration_ms=latency,
                **common,
                error=f"the function's interpreter was killed: it went past its memory limit of "
                f"{spec.memory_mb} MB or its CPU limit",
            )
        kind: Kind = answer.get("kind", "error")
        if kind == "memory":
            self.usable = False  # an interpreter that ran out of memory may be left half-built
            answer["error"] = f"the function went past its memory limit of {spec.memory_mb} MB ({answer.get('error')})"
        return Outcome(
            kind=kind,
            result=answer.get("result"),
            error=answer.get("error"),
            duration_ms=float(answer.get("duration_ms", latency)),
            max_rss_mb=float(answer.get("max_rss_mb", 0.0)),
            **common,
        )

    def close(self) -> None:
        self.usable = False
        self.process.kill()
        self.sandbox.close()


def _extract(package: bytes, sandbox: Sandbox) -> None:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                sandbox.put_file(f"{PACKAGE_DIR}/{info.filename}", archive.read(info))


class FunctionPool:
    """Warm interpreters of one process (one event loop), keyed by function version."""

    def __init__(self, runtime: Runtime, idle_s: float = 300.0):
        self.runtime = runtime
        self.idle_s = idle_s
        self._idle: dict[str, list[Interpreter]] = {}
        self._busy: set[Interpreter] = set()
        self._limits: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._reaper: asyncio.Task | None = None

    def warm(self, spec: FunctionSpec) -> int:
        """Interpreters of this version started and idle now."""
        return len(self._idle.get(spec.version_key, []))

    def _slot(self, spec: FunctionSpec) -> asyncio.Semaphore:
        held = self._limits.get(spec.function_key)
        if held is None or held[0] != spec.concurrency:
            held = self._limits[spec.function_key] = (spec.concurrency, asyncio.Semaphore(spec.concurrency))
        return held[1]

    async def invoke(self, spec: FunctionSpec, event: Any, package: Callable[[], bytes]) -> Outcome:
        """Run one invocation; ``package`` gives the zip bytes and is called only on a cold start."""
        self._ensure_reaper()
        queued = time.perf_counter()
        async with self._slot(spec):
            queued_ms = (time.perf_counter() - queued) * 1000
            while (idle := self._idle.get(spec.version_key, [])) and not idle[-1].process.alive():
                await asyncio.to_thread(idle.pop().close)
            cold = not idle
            started = time.perf_counter()
            if cold:
                interp, failed = await self._start(spec, package)
                if interp is None:
                    return Outcome(
                        kind="error",
                        error=failed,
                        cold=True,
                        queued_ms=queued_ms,
                        duration_ms=0.0,
                        latency_ms=(time.perf_counter() - started) * 1000,
                    )
            else:
                interp = idle.pop()
            self._busy.add(interp)
            try:
                outcome = await interp.call(event, cold, queued_ms)
            finally:
                self._busy.discard(interp)
                if interp.usable and interp.process.alive():
                    self._idle.setdefault(spec.version_key, []).append(interp)
                else:
                    await asyncio.to_thread(interp.close)
            if cold:  # the cold path's latency includes starting the sandbox and importing the package
                outcome.latency_ms = (time.perf_counter() - started) * 1000
            return outcome

    async def _start(self, spec: FunctionSpec, package: Callable[[], bytes]) -> tuple[Interpreter | None, str]:
        data = await asyncio.to_thread(package)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        # The unpacked package plus room for the handler's own files.
        limits = Limits(
            wall_seconds=max(spec.timeout_s, 1.0),
            cpu_seconds=3600,
            memory_mb=spec.memory_mb,
            disk_mb=math.ceil(unpacked / 2**20) + 64,
        )
        sandbox = await self.runtime.start(SandboxSpec(limits=limits))
        try:
            await asyncio.to_thread(_extract, data, sandbox)
            control = f"{sandbox.workdir}/{CONTROL_DIR}"
            sandbox.put_file(f"{CONTROL_DIR}/.keep", b"")
            env = {
                "CX_CONTROL": control,
                "CX_PACKAGE": f"{sandbox.workdir}/{PACKAGE_DIR}",
                "CX_HANDLER": spec.handler,
                "CX_FUNCTION": spec.name,
                "CX_VERSION": str(spec.version),
                "CX_MEMORY_MB": str(spec.memory_mb),
            }
            process = sandbox.start_process([*self.runtime.python_argv(), "-I", "-c", RUNNER_SOURCE], env=env)
        except BaseException:
            await asyncio.to_thread(sandbox.close)
            raise
        interp = Interpreter(spec, sandbox, process)
        loaded = await interp.wait_for("load.json", LOAD_TIMEOUT_S)
        if loaded is None or not loaded.get("ok"):
            await asyncio.to_thread(interp.close)
            why = (loaded or {}).get("error") or (
                f"the interpreter did not import the package within "
                f"{LOAD_TIMEOUT_S:g} s or was killed (memory limit "
                f"{spec.memory_mb} MB)"
            )
            return None, f"the function's package could not be loaded: {why}"
        return interp, ""

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.idle_s / 2, 5.0)))
            try:
                await self.reap()
            except Exception:  # the reaper must outlive one failed close
                log.exception("reaping idle function interpreters failed")

    async def reap(self, now: float | None = None) -> int:
        """Close interpreters idle longer than the idle time (as of ``now``, monotonic); returns how many."""
        now = time.monotonic() if now is None else now
        stale: list[Interpreter] = []
        for key, idle in list(self._idle.items()):
            keep = [i for i in idle if now - i.last_used <= self.idle_s and i.process.alive()]
            stale += [i for i in idle if i not in keep]
            idle[:] = keep  # in place: an invocation may hold this list
            if not keep:
                self._idle.pop(key, None)
        for interp in stale:
            await asyncio.to_thread(interp.close)
        return len(stale)

    def _take_all(self) -> list[Interpreter]:
        every = [i for idle in self._idle.values() for i in idle] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        return every

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for interp in self._take_all():
            await asyncio.to_thread(interp.close)

    def close_now(self) -> None:
        """Close every interpreter (blocking): at process exit, when no event loop may be left to do it."""
        for interp in self._take_all():
            interp.close()


# Kept past their loop's end (not weakly), so the exit hook can still close what their interpreters hold.
_pools: dict[asyncio.AbstractEventLoop, FunctionPool] = {}


@atexit.register
def close_all_pools() -> None:
    """Close every pool's interpreters (at exit, and wherever warm sandboxes must not outlive their user).

    Interpreters left running would leave their sandboxes' scratch mounts behind on the host."""
    for pool in list(_pools.values()):
        pool.close_now()


def default_pool() -> FunctionPool:
    """This event loop's pool on the default sandbox runtime (interpreters belong to the loop that reads them)."""
    from compute.runtimes import runtime_registry
    from cxmpute.settings import get_settings

    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        settings = get_settings()
        pool = _pools[loop] = FunctionPool(runtime_registry(settings).get(), idle_s=settings.function_idle_s)
    return pool
