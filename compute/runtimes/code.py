"""Running code in any runtime: one-shot jobs and owned, persistent sessions, both on ``pykernel``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from compute.runtimes.base import ResourceUsage, Runtime, Sandbox, SandboxSpec
from cxmpute.errors import Conflict, Forbidden, NotFound

CONTROL_DIR = ".cxmpute"
KERNEL_SOURCE = (Path(__file__).parent / "pykernel.py").read_text()
Status = Literal["ok", "error", "timeout", "killed"]


class CodeResult(BaseModel):
    status: Status
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    result: Any = None
    error: str | None = None
    usage: ResourceUsage = Field(default_factory=ResourceUsage)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _kernel_argv(runtime: Runtime, mode: str) -> list[str]:
    return [*runtime.python_argv(), "-I", "-c", KERNEL_SOURCE, mode]


def _outcome(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    """The kernel's answer; None when there is none (yet). Results are capped like the output streams."""
    cap = sandbox.spec.limits.output_bytes + 4096
    try:
        raw = sandbox.get_file(f"{CONTROL_DIR}/{name}", max_bytes=cap + 1)
    except Exception:  # absent or unreadable: the job died before writing it
        return None
    if len(raw) > cap:
        return {"ok": False, "error": f"the result is larger than {cap} bytes; write big values to a file instead"}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def run_code(
    sandbox: Sandbox,
    runtime: Runtime,
    code: str,
    *,
    language: Literal["python", "shell"] = "python",
    inputs: dict[str, Any] | None = None,
    files: Iterable[tuple[str, bytes]] = (),
) -> CodeResult:
    """Run one snippet in a started sandbox and gather everything the caller gets back."""
    for path, data in files:
        sandbox.put_file(path, data)
    sandbox.put_file(f"{CONTROL_DIR}/inputs.json", json.dumps(inputs or {}).encode())
    main, other = ("main.py", "main.sh") if language == "python" else ("main.sh", "main.py")
    sandbox.remove_file(f"{CONTROL_DIR}/{other}")
    sandbox.remove_file(f"{CONTROL_DIR}/result.json")
    sandbox.put_file(f"{CONTROL_DIR}/{main}", code.encode())
    control = f"{sandbox.workdir}/{CONTROL_DIR}"
    env = {"CX_CONTROL": control, "INPUTS_FILE": f"{control}/inputs.json", "RESULT_FILE": f"{control}/result.user.json"}
    done = await sandbox.exec(_kernel_argv(runtime, "once"), env=env)
    outcome = _outcome(sandbox, "result.json")
    if done.timed_out:
        status, error = "timeout", f"the job ran longer than {sandbox.spec.limits.wall_seconds:g} s and was killed"
    elif outcome is None and (done.exit_code is None or done.exit_code > 128):
        status, error = "killed", "the job was killed by a signal: it exceeded its CPU, memory or process limits"
    elif outcome is None:
        status = "error"
        error = (
            f"the job ended (exit {done.exit_code}) without reporting its result: it may have run out of "
            "its disk or memory limit"
        )
    else:
        status, error = ("ok" if outcome.get("ok") and done.exit_code == 0 else "error"), outcome.get("error")
    usage = done.usage
    if outcome and isinstance(outcome.get("usage"), dict):
        inner = ResourceUsage.model_validate(outcome["usage"])
        usage = ResourceUsage(
            wall_seconds=done.usage.wall_seconds,
            cpu_seconds=max(inner.cpu_seconds, usage.cpu_seconds),
            max_rss_mb=max(inner.max_rss_mb, usage.max_rss_mb),
        )
    return CodeResult(
        status=status,
        exit_code=done.exit_code,
        stdout=_decode(done.stdout),
        stderr=_decode(done.stderr),
        stdout_truncated=done.stdout_truncated,
        stderr_truncated=done.stderr_truncated,
        result=outcome.get("result") if outcome else None,
        error=error,
        usage=usage,
    )


class CodeSession:
    """A kernel kept running in one sandbox; cells share its namespace. Owned by one account."""

    def __init__(self, session_id: str, owner: str, runtime: Runtime, sandbox: Sandbox, idle_timeout: float):
        self.id, self.owner, self.runtime, self.sandbox = session_id, owner, runtime, sandbox
        self.idle_timeout = idle_timeout
        self.last_used = time.monotonic()
        self.cells_run = 0
        self.ended = False
        self.lock = asyncio.Lock()
        control = f"{sandbox.workdir}/{CONTROL_DIR}"
        sandbox.put_file(f"{CONTROL_DIR}/inputs.json", b"{}")
        self.process = sandbox.start_process(_kernel_argv(runtime, "serve"), env={"CX_CONTROL": control})

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.last_used > self.idle_timeout

    async def run(self, code: str, timeout: float, inputs: dict[str, Any] | None = None) -> CodeResult:
        """Run one cell; ``inputs``, when given, becomes the session's ``inputs`` variable first."""
        async with self.lock:
            self.last_used = time.monotonic()
            cell = f"cell-{self.cells_run}-{uuid.uuid4().hex[:8]}"
            self.cells_run += 1
            if self.ended or not self.process.alive():
                self.ended = True
                return CodeResult(status="killed", error="the session's kernel has ended; start a new session")
            request = {"id": cell, "code": code, "timeout": timeout}
            if inputs is not None:
                request["inputs"] = inputs
            loop, answered = asyncio.get_running_loop(), asyncio.Event()
            self.process.on_stdout = lambda _: loop.call_soon_threadsafe(answered.set)
            self.process.send((json.dumps(request) + "\n").encode())
            outcome = await self._wait(cell, timeout + 2.0, answered)
            self.process.on_stdout = None
            cap = self.sandbox.spec.limits.output_bytes
            streams = {name: self._read_stream(f"{cell}.{name}", cap) for name in ("stdout", "stderr")}
            for name in ("stdout", "stderr", "json"):
                self.sandbox.remove_file(f"{CONTROL_DIR}/{cell}.{name}")
            self.last_used = time.monotonic()
            if outcome is None:
                # The kernel did not answer in time (stuck in C code, or killed by a limit): it cannot be
                # trusted to hold a consistent state any more, so the session ends.
                alive = self.process.alive()
                self.process.kill()
                self.ended = True
                return CodeResult(
                    status="timeout" if alive else "killed",
                    stdout=streams["stdout"][0],
                    stderr=streams["stderr"][0],
                    error=(
                        "the cell did not finish in time; the session was ended"
                        if alive
                        else "the kernel was killed, likely by a CPU, memory or process limit; the session has ended"
                    ),
                )
            status: Status = "ok" if outcome.get("ok") else ("timeout" if outcome.get("timed_out") else "error")
            return CodeResult(
                status=status,
                stdout=streams["stdout"][0],
                stderr=streams["stderr"][0],
                stdout_truncated=streams["stdout"][1],
                stderr_truncated=streams["stderr"][1],
                result=outcome.get("result"),
                error=outcome.get("error"),
                usage=ResourceUsage.model_validate(outcome.get("usage") or {}),
            )

    def _read_stream(self, name: str, cap: int) -> tuple[str, bool]:
        try:
            data = self.sandbox.get_file(f"{CONTROL_DIR}/{name}", max_bytes=cap + 1)
        except Exception:  # never written: the kernel died first
            return "", False
        return _decode(data[:cap]), len(data) > cap

    async def _wait(self, cell: str, timeout: float, answered: asyncio.Event) -> dict[str, Any] | None:
        """The kernel's answer file, looked for whenever the kernel writes a notice (and every 50 ms,
        since user code can write to, or close, the notice channel too)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            outcome = _outcome(self.sandbox, f"{cell}.json")
            if outcome is not None:
                return outcome
            if not self.process.alive():
                return _outcome(self.sandbox, f"{cell}.json")
            try:
                await asyncio.wait_for(answered.wait(), timeout=min(0.05, remaining))
            except TimeoutError:
                pass
            answered.clear()
        return None

    @property
    def alive(self) -> bool:
        return not self.ended and self.process.alive()

    async def close(self) -> None:
        await asyncio.to_thread(self.close_now)

    def close_now(self) -> None:
        self.ended = True
        self.process.kill()
        self.sandbox.close()


class SessionInfo(BaseModel):
    id: str
    owner: str
    runtime: str
    cells_run: int
    alive: bool


class SessionManager:
    """The sessions of this process. A session is reachable only by the owner that started it."""

    def __init__(self, max_sessions: int = 32):
        self.max_sessions = max_sessions
        self._sessions: dict[str, CodeSession] = {}
        self._lock = threading.Lock()

    async def open(self, owner: str, runtime: Runtime, spec: SandboxSpec, idle_timeout: float) -> CodeSession:
        await self.reap()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise Conflict(
                    f"too many open code sessions (limit {self.max_sessions}); close one first", field="session_id"
                )
        sandbox = await runtime.start(spec)
        session = CodeSession(uuid.uuid4().hex, owner, runtime, sandbox, idle_timeout)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str, owner: str) -> CodeSession:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no open code session {session_id!r} (it may have ended or expired)", field="session_id")
        if session.owner != owner:
            raise Forbidden(f"code session {session_id!r} belongs to another account", field="session_id")
        return session

    def list(self, owner: str) -> list[SessionInfo]:
        with self._lock:
            sessions = [s for s in self._sessions.values() if s.owner == owner]
        return [
            SessionInfo(id=s.id, owner=s.owner, runtime=s.runtime.name, cells_run=s.cells_run, alive=s.alive)
            for s in sessions
        ]

    async def close(self, session_id: str, owner: str) -> None:
        session = self.get(session_id, owner)
        with self._lock:
            self._sessions.pop(session_id, None)
        await session.close()

    async def reap(self) -> None:
        """Close sessions idle past their timeout or whose kernel has ended."""
        with self._lock:
            dead = [s for s in self._sessions.values() if s.expired or not s.alive]
            for s in dead:
                self._sessions.pop(s.id, None)
        for s in dead:
            await s.close()

    def close_all(self) -> None:
        """Close every session (blocking): at process exit, and in tests."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close_now()
