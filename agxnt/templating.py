"""Rendering untrusted Jinja templates without letting one stall or flood the process that asked.

Jinja's sandbox stops a template from reaching Python's internals, but not from looping for hours or
building gigabytes: a single expression (``"x" * 10**9``, ``10**10**10``) runs in C where no check can
interrupt it. So renders happen in worker processes (agxnt.template_worker), waited on from threads of
their own: the caller's event loop stays free, a render that outlives ``template_timeout_s`` has its
process killed, one that needs more than ``template_max_memory_mb`` fails inside it, and output past
``template_max_output_chars`` is refused as it is generated. Workers get no environment and, when the
platform runs as root, run as ``untrusted_user``: a way out of Jinja's sandbox would find nothing to use.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from agxnt.errors import AgentError
from agxnt.untrusted import Identity, drop_to
from cxmpute.settings import Settings

WORKER = Path(__file__).with_name("template_worker.py")
START_TIMEOUT_S = 30.0
MAX_IDLE = 2
# JSON escapes at most six bytes per character; the rest is the answer's envelope.
_ANSWER_BYTES_PER_CHAR = 6


class TemplateFailed(AgentError):
    status_code = 422


class _WorkerGone(Exception):
    """The worker process ended, or broke the protocol, before answering."""


class _Worker:
    def __init__(self, user: Identity | None) -> None:
        self.user = user
        # No environment (the platform's holds secrets) and nothing of the caller's but the pipes; the worker
        # drops to ``user`` itself once its imports are done, since the interpreter may live where only the
        # platform's user can read.
        ids = [] if user is None else [str(user.uid), str(user.gid)]
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), *ids],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            cwd="/",
            env={},
        )
        self._buffer = b""
        if self.read_line(time.monotonic() + START_TIMEOUT_S, 64) != b"ready":
            self.kill()
            raise _WorkerGone("did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, request: bytes) -> None:
        try:
            self.proc.stdin.write(request + b"\n")
            self.proc.stdin.flush()
        except OSError:
            raise _WorkerGone("stopped") from None

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        """One line of the worker's answer, or None when the deadline passed first."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            data = os.read(fd, 1 << 20)
            if not data:
                raise _WorkerGone("stopped")
            self._buffer += data
            if len(self._buffer) > max_bytes:
                raise _WorkerGone("answered more than it may")
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class _Pool:
    """Idle workers kept warm (a worker starts in about a tenth of a second); renders run one per CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._executor: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="cxmpute-template"
                )
            return self._executor

    def take(self, user: Identity | None) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive() and worker.user == user:
                    return worker
                worker.kill()
        return _Worker(user)

    def give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(worker)
                return
        worker.kill()

    def render(self, request: bytes, user: Identity | None, timeout: float, max_chars: int) -> dict[str, Any]:
        try:
            worker = self.take(user)
        except (_WorkerGone, OSError) as exc:
            raise TemplateFailed(
                f"the template renderer could not start: {exc}", field="template", status_code=503
            ) from None
        try:
            worker.send(request)
            line = worker.read_line(time.monotonic() + timeout, max_chars * _ANSWER_BYTES_PER_CHAR + 4096)
        except _WorkerGone as exc:
            worker.kill()
            raise TemplateFailed(f"the template's renderer {exc} before it finished", field="template") from None
        if line is None:
            worker.kill()
            raise TemplateFailed(f"the template took longer than {timeout:g} s to render", field="template")
        self.give_back(worker)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("text", ""), str):
            raise TemplateFailed("the template's renderer gave an answer that is not one", field="template")
        return answer


_pool = _Pool()


async def render_template(template: str, variables: dict[str, Any], settings: Settings) -> str:
    """Render ``template`` with ``variables`` under the configured time, memory and output limits."""
    try:
        values = to_jsonable_python(variables, fallback=str)
    except ValueError as exc:  # bytes that are not UTF-8, a value that contains itself
        raise AgentError(f"template variables must be JSON values: {exc}", field="variables") from None
    request = json.dumps(
        {
            "template": template,
            "variables": values,
            "max_chars": settings.template_max_output_chars,
            "max_memory_mb": settings.template_max_memory_mb,
        }
    ).encode()
    answer = await asyncio.get_running_loop().run_in_executor(
        _pool.executor(),
        _pool.render,
        request,
        drop_to(settings),
        settings.template_timeout_s,
        settings.template_max_output_chars,
    )
    if "text" in answer:
        return answer["text"]
    error, message = answer.get("error"), str(answer.get("message", ""))
    if error == "undefined":
        raise AgentError(f"template variable missing: {message}", field="variables")
    if error == "too_long":
        raise TemplateFailed(
            f"the template's output is longer than {settings.template_max_output_chars} characters", field="template"
        )
    if error == "memory":
        raise TemplateFailed(
            f"the template needs more than {settings.template_max_memory_mb} MB to render", field="template"
        )
    raise AgentError(f"template error: {message}", field="template")
