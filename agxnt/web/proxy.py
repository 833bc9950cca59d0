"""The browser's way out: a small HTTP proxy on 127.0.0.1 that applies the egress policy per connection.

Chromium follows redirects, opens sockets for WebSockets and prefetches on its own, out of reach of
request interception; a proxy sees every one of those connections. It resolves and checks each host,
then connects to the very address it checked, so the browser's traffic is pinned like the HTTP client's.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from agxnt.web.egress import EgressDenied, EgressPolicy

MAX_HEAD = 64 * 1024
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


class EgressProxy:
    def __init__(self, policy: EgressPolicy, timeout: float):
        self.policy = policy
        self.timeout = timeout
        self.blocked: list[str] = []  # URLs refused, in order
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._track, "127.0.0.1", 0, limit=MAX_HEAD)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a broken or refused connection ends here; the browser reports it as a network error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            url = f"https://{host}:{port}/"
        else:
            url = target
            if urlsplit(url).scheme != "http":
                return await self._refuse(writer, 400, "the proxy only forwards absolute http URLs")
        try:
            resolved = await self.policy.resolve(url)
        except EgressDenied as exc:
            self.blocked.append(url)
            return await self._refuse(writer, 403, exc.message)
        try:
            upstream_r, upstream_w = await asyncio.wait_for(
                asyncio.open_connection(resolved.address, resolved.port, limit=MAX_HEAD), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            return await self._refuse(writer, 502, f"cannot connect to {resolved.host}:{resolved.port}: {exc}")
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
                await _splice(reader, writer, upstream_r, upstream_w)
                return
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = [h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
            # one request per connection keeps the proxy a plain pipe: no need to parse bodies
            upstream_w.write(_head(f"{method} {path} {version}", headers))
            await upstream_w.drain()
            response_head = await asyncio.wait_for(upstream_r.readuntil(b"\r\n\r\n"), self.timeout)
            status_line, *response_headers = response_head.decode("latin-1").split("\r\n")
            kept = [h for h in response_headers if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
            writer.write(_head(status_line, kept))
            await _splice(reader, writer, upstream_r, upstream_w)
        finally:
            upstream_w.close()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = message.encode()
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


def _head(first_line: str, headers: list[str]) -> bytes:
    lines = [first_line, *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


async def _splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream_r: asyncio.StreamReader,
    upstream_w: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the upstream side is done."""
    upload = asyncio.ensure_future(_pipe(client_r, upstream_w))
    try:
        await _pipe(upstream_r, client_w)
    finally:
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
