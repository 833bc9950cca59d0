"""A small client of QMP, QEMU's JSON machine protocol, over the machine's unix socket.

One connection per operation: a machine lives in its own (daemonized) process that outlives the API
process which started it, so nothing here holds a socket between calls.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from compute.errors import ComputeError


class QmpError(ComputeError):
    status_code = 502


class Qmp:
    def __init__(self, path: Path, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise QmpError(f"the machine's monitor does not answer: {exc}") from None
        self._buffer = b""
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise QmpError(f"the machine's monitor went away: {exc}") from None
            if not data:
                raise QmpError("the machine's monitor closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return its result; asynchronous events received meanwhile are skipped."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")

    def human(self, command_line: str) -> str:
        """An HMP command (``savevm``, ``loadvm``): those report failure as text, which is raised."""
        out = self.execute("human-monitor-command", {"command-line": command_line}) or ""
        if out.strip():
            raise QmpError(f"{command_line.split()[0]}: {out.strip()}")
        return out
