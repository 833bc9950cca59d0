"""Running a host process to its end with a deadline, capped output and its children's resource usage.

Threads (not asyncio's child watcher) wait for the process so ``wait4`` can report the CPU time and
peak memory of everything it ran; output beyond the cap is read and dropped so a flood neither
blocks the job on a full pipe nor fills the host's memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from compute.runtimes.base import ExecResult, OutputChunk, OutputFn, ResourceUsage


class _Capped:
    def __init__(self, stream: str, cap: int, on_output: OutputFn | None):
        self.stream, self.cap, self.on_output = stream, cap, on_output
        self.buf = bytearray()
        self.truncated = False

    def pump(self, pipe: IO[bytes]) -> None:
        while chunk := pipe.read1(65536):
            room = self.cap - len(self.buf)
            if room > 0:
                kept = chunk[:room]
                self.buf += kept
                if self.on_output is not None:
                    self.on_output(OutputChunk(stream=self.stream, data=bytes(kept)))
            if len(chunk) > max(room, 0):
                self.truncated = True
        pipe.close()


def run_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    stdin: bytes | None,
    timeout: float,
    output_cap: int,
    on_output: OutputFn | None = None,
    pass_fds: Sequence[int] = (),
    on_spawn: Callable[[], None] | None = None,
) -> ExecResult:
    """Run ``argv`` to its end; on the deadline SIGKILL its process group. ``on_spawn`` runs right after
    the start (a failure there kills the process and is raised)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(pass_fds),
    )
    if on_spawn is not None:
        try:
            on_spawn()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    out, err = _Capped("stdout", output_cap, on_output), _Capped("stderr", output_cap, on_output)
    readers = [
        threading.Thread(target=c.pump, args=(p,), daemon=True) for c, p in ((out, proc.stdout), (err, proc.stderr))
    ]
    for t in readers:
        t.start()
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    timed_out = threading.Event()

    def on_deadline() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, on_deadline)
    timer.daemon = True
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        # The readers end when the last holder of the pipes exits; the sandbox is torn down with its
        # parent, so this is bounded, but never wait forever on a descendant that escaped it.
        t.join(timeout=5)
    usage = ResourceUsage(
        wall_seconds=round(time.monotonic() - started, 4),
        cpu_seconds=round(rusage.ru_utime + rusage.ru_stime, 4),
        max_rss_mb=round(rusage.ru_maxrss / 1024, 2),
    )
    killed = proc.returncode < 0
    return ExecResult(
        exit_code=None if killed else proc.returncode,
        stdout=bytes(out.buf),
        stderr=bytes(err.buf),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        timed_out=timed_out.is_set(),
        usage=usage,
    )


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
