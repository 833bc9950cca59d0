"""A replica's published port: a listener on the provider's address that relays each connection into the
container's network namespace, to the service's port on the container's own loopback.

A replica is never given an address the host routes to it: its network is ``none`` (or, with a grant, the
engine's bridge fenced against the host and every private address, which would also drop its answers to a
connection from the host). So the provider, not the container, crosses the boundary: for each connection it
makes a socket inside the container's namespace and connects it to ``127.0.0.1:<port>`` there. Nothing the
container sends can reach the host's or the provider network's services.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading

from compute.services.errors import ServiceError

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_CHUNK = 2**16


def _socket_in(netns: int) -> socket.socket:
    """A TCP socket that lives in the network namespace ``netns``. A short-lived thread of its own enters the
    namespace and makes it: a thread's namespace is its own, so no other thread of the worker is ever in the
    container's, and the socket stays in it once the thread has ended."""
    made: dict[str, object] = {}

    def make() -> None:
        try:
            if _libc.setns(netns, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"entering the replica's network namespace: {os.strerror(err)}")
            made["socket"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            made["error"] = exc

    thread = threading.Thread(target=make, name="cxmpute-relay-socket")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["socket"]  # type: ignore[return-value]


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, src_end: asyncio.StreamWriter) -> None:
    """One direction of a connection. A failure on either side ends both, so neither waits on a dead peer."""
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()
        src_end.close()


class Relay:
    """Listens on ``host`` (a free port) while the replica runs; :meth:`close` ends it and its connections."""

    def __init__(self, pid: int, port: int):
        self.port = port
        self._netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._server: asyncio.Server | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._ends: set[asyncio.StreamWriter] = set()

    async def start(self, host: str) -> int:
        """Listen; returns the port. A provider that cannot enter the namespace fails here, not per request."""
        try:
            _socket_in(self._netns).close()
        except OSError as exc:
            raise ServiceError(
                f"this provider cannot reach its replicas ({exc.strerror}); it runs them as root",
                field="port",
                status_code=502,
            ) from None
        self._server = await asyncio.start_server(self._serve, host, 0)
        return self._server.sockets[0].getsockname()[1]

    def _track(self, end: asyncio.StreamWriter) -> None:
        self._ends.add(end)
        if self._closed:
            end.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        ends = [writer]
        self._track(writer)
        try:
            sock = await asyncio.to_thread(_socket_in, self._netns)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
            except OSError:
                sock.close()
                raise
            up_reader, upstream = await asyncio.open_connection(sock=sock)
            ends.append(upstream)
            self._track(upstream)
            await asyncio.gather(_pipe(reader, upstream, writer), _pipe(up_reader, writer, upstream))
        except OSError:  # the container is not listening (yet), or the relay closed meanwhile
            pass
        finally:
            for end in ends:
                self._ends.discard(end)
                end.close()
            self._tasks.discard(asyncio.current_task())

    async def close(self) -> None:
        """Stop listening and end every connection (closing its ends lets each finish on its own)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        for end in list(self._ends):
            end.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        os.close(self._netns)
