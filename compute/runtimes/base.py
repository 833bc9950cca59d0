"""The one Runtime interface every way of running untrusted code implements.

A runtime starts a :class:`Sandbox` (an isolated place with a private scratch directory); a sandbox
runs commands with limits, streams their output, takes and gives files, runs a long-lived process
for interactive sessions, reports resource usage and is stopped, leaving nothing behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from compute.errors import ComputeError


class RuntimeUnavailable(ComputeError):
    status_code = 503


class Limits(BaseModel):
    """What one job may use. Every runtime enforces every field."""

    wall_seconds: float = Field(30.0, gt=0, le=3600, description="Wall-clock limit of one command")
    cpu_seconds: int = Field(30, ge=1, le=3600, description="CPU time of the whole sandbox")
    memory_mb: int = Field(512, ge=32, le=65536, description="Address space (sandbox) / memory (container)")
    processes: int = Field(64, ge=4, le=4096, description="Processes and threads at once")
    disk_mb: int = Field(64, ge=1, le=65536, description="Size of the scratch directory")
    file_size_mb: int = Field(32, ge=1, le=65536, description="Largest single file written")
    open_files: int = Field(256, ge=16, le=65536, description="Open file descriptors per process")
    output_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576, description="Kept bytes of stdout and of stderr")
    cpus: float = Field(1.0, gt=0, le=256, description="CPU share (container)")


class SandboxSpec(BaseModel):
    """The terms a sandbox starts on: its limits, whether it may reach the network, its environment."""

    limits: Limits = Field(default_factory=Limits)
    network: bool = Field(False, description="Grant outbound network; without it only a private loopback exists")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of commands; nothing else leaks in")


class ResourceUsage(BaseModel):
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    max_rss_mb: float = 0.0


class OutputChunk(BaseModel):
    stream: Literal["stdout", "stderr"]
    data: bytes


class ExecResult(BaseModel):
    exit_code: int | None = Field(None, description="None when the command was killed")
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    usage: ResourceUsage = Field(default_factory=ResourceUsage)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class FileInfo(BaseModel):
    path: str
    size: int


OutputFn = Callable[[OutputChunk], None]


class BackgroundProcess(ABC):
    """A long-lived command in a sandbox that reads requests from its stdin (an interactive kernel).

    Its stdout is read all the time; what it writes goes to ``on_stdout`` (from a reader thread), which
    lets a caller wake up on a notice instead of polling.
    """

    on_stdout: Callable[[bytes], None] | None = None

    def _stdout(self, data: bytes) -> None:
        callback = self.on_stdout
        if callback is not None:
            callback(data)

    @abstractmethod
    def send(self, data: bytes) -> None: ...

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def kill(self) -> None: ...


class Sandbox(ABC):
    """One started, isolated place. Paths given to file methods are relative to its scratch directory."""

    workdir: ClassVar[str] = "/scratch"

    def __init__(self, spec: SandboxSpec):
        self.spec = spec

    @abstractmethod
    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        on_output: OutputFn | None = None,
    ) -> ExecResult:
        """Run a command to its end (or its timeout), calling ``on_output`` as output arrives."""

    async def stream(self, argv: Sequence[str], **kwargs) -> AsyncIterator[OutputChunk | ExecResult]:
        """Yield output chunks as they arrive, then the final :class:`ExecResult`."""
        import asyncio

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[OutputChunk | ExecResult] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.exec(argv, on_output=lambda c: loop.call_soon_threadsafe(queue.put_nowait, c), **kwargs)
        )
        task.add_done_callback(lambda t: t.exception() or queue.put_nowait(t.result()))
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                item = getter.result()
                yield item
                if isinstance(item, ExecResult):
                    return
            else:
                getter.cancel()
                task.result()  # raises the exec's error; a clean end has put its result in the queue

    @abstractmethod
    def start_process(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> BackgroundProcess: ...

    @abstractmethod
    def put_file(self, path: str, data: bytes) -> None: ...

    @abstractmethod
    def get_file(self, path: str, max_bytes: int | None = None) -> bytes: ...

    @abstractmethod
    def list_files(self) -> list[FileInfo]: ...

    @abstractmethod
    def remove_file(self, path: str) -> None: ...

    @abstractmethod
    def usage(self) -> ResourceUsage:
        """Resources used by the sandbox's commands so far."""

    @abstractmethod
    def close(self) -> None:
        """Kill everything still running in the sandbox and delete its scratch directory (blocking)."""

    async def stop(self) -> None:
        """:meth:`close`, off the event loop."""
        import asyncio

        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class Runtime(ABC):
    """A way to run untrusted code. Implementations register under the ``cxmpute.runtimes`` entry points."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    python: ClassVar[str] = "python3"
    # False for a runtime of whole machines (vm): it starts no Sandbox, so user code is never sent to it.
    runs_code: ClassVar[bool] = True

    @abstractmethod
    def check(self) -> str | None:
        """None when this machine can run it, otherwise why not."""

    @abstractmethod
    async def start(self, spec: SandboxSpec | None = None) -> Sandbox: ...

    def python_argv(self) -> list[str]:
        """How to start the Python interpreter inside a sandbox of this runtime."""
        return [self.python]
