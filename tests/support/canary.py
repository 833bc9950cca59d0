"""Local servers on 127.0.0.1 that record who reached them: an HTTP site (pages, redirects) and a UDP port.

A refused request is only half the proof; the other half is that nothing arrived where it was aimed.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class HttpCanary:
    """Answers ``/redirect?to=URL`` with a 302 to URL, ``/page/NAME`` with the HTML registered under NAME,
    anything else with 200 ``canary`` (or, with ``redirect_all`` set, everything with a 307 there); every
    request's path is kept in ``hits``."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.pages: dict[str, str] = {}
        self.redirect_all: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                outer.hits.append(self.path)
                url = urlsplit(self.path)
                if outer.redirect_all:
                    return self._send(307, b"", {"Location": outer.redirect_all})
                if url.path == "/redirect":
                    return self._send(302, b"", {"Location": parse_qs(url.query)["to"][0]})
                if url.path.startswith("/page/") and url.path[6:] in outer.pages:
                    return self._send(200, outer.pages[url.path[6:]].encode(), {"Content-Type": "text/html"})
                self._send(200, b"canary", {"Content-Type": "text/plain"})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UdpCanary:
    """A UDP port on 127.0.0.1 that counts the datagrams sent to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def received(self) -> int:
        count = 0
        while True:
            try:
                self.sock.recvfrom(65536)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()


class TcpCanary:
    """A TCP port on 127.0.0.1 that counts the connections made to it (whatever they then send)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
