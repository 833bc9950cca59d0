"""Chromium on untrusted pages: its own sandbox on, never root, none of the platform's environment, and no
WebRTC traffic beside the egress proxy."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from agxnt.context import AgentContext
from agxnt.web.browser import browsers
from agxnt.web.session import WebSession
from tests.agxnt.web.conftest import _serve
from tests.support.canary import TcpCanary, UdpCanary

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.browser]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _chromium_processes() -> list[tuple[int, int, list[str]]]:
    """(pid, real uid, argv) of each Chromium process this test process started."""
    procs = []
    for pid in _descendants(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            uid = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
            )
        except (OSError, StopIteration):
            continue
        if argv and argv[0].endswith("chromium"):
            procs.append((pid, uid, argv))
    return procs


async def _page_text(web: WebSession, url: str) -> str:
    job = await web.browser()

    async def read() -> str:
        page = await job.context.new_page()
        try:
            await page.goto(url)
            return await page.inner_text("body")
        finally:
            await page.close()

    return await browsers.call(read())


async def test_chromium_runs_sandboxed_and_unprivileged(ctx: AgentContext) -> None:
    async with WebSession(ctx) as web:
        status = await _page_text(web, "chrome://sandbox")
        procs = _chromium_processes()
    assert "You are adequately sandboxed" in status, status
    assert "Seccomp-BPF sandbox\tYes" in status
    assert procs
    for pid, uid, argv in procs:
        assert "--no-sandbox" not in argv, argv
        if os.geteuid() == 0:
            assert uid == pwd.getpwnam(ctx.settings.untrusted_user).pw_uid != 0, (pid, uid, argv)


async def test_chromium_gets_none_of_the_platforms_environment(ctx: AgentContext) -> None:
    assert os.environ.get("CXMPUTE_HOME")  # the test process has one (tests/conftest.py)
    async with WebSession(ctx) as web:
        await web.browser()
        environments = [Path(f"/proc/{pid}/environ").read_bytes() for pid, _, _ in _chromium_processes()]
    assert environments
    for env in environments:
        names = {item.split(b"=", 1)[0] for item in env.split(b"\0") if item}
        assert not {n for n in names if n.startswith((b"CXMPUTE_", b"PREFECT_"))}, names


class _RtcPage(BaseHTTPRequestHandler):
    """A page that tries every way WebRTC has to reach 127.0.0.1 on its own sockets."""

    udp = tcp = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = f"""<!doctype html><title>rtc</title><script>
const report = s => {{ const p = document.createElement('p'); p.id = 'done'; p.textContent = s;
                      document.body.appendChild(p); }};
window.addEventListener('load', () => {{
  const frame = document.createElement('iframe'); document.body.appendChild(frame);
  const found = [window.RTCPeerConnection, window.webkitRTCPeerConnection,
                 frame.contentWindow.RTCPeerConnection].filter(Boolean);
  document.title = 'constructors:' + found.length;
  const PC = found[0];
  if (!PC) return report('none');
  const pc = new PC({{iceServers: [{{urls: 'stun:127.0.0.1:{self.udp}'}},
    {{urls: 'turn:127.0.0.1:{self.tcp}?transport=tcp', username: 'u', credential: 'p'}}]}});
  pc.createDataChannel('leak');
  pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === 'complete') report('gathered'); }};
  pc.createOffer().then(o => pc.setLocalDescription(o));
  setTimeout(() => report('waited'), 5000);
}});
</script>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def rtc_page() -> Iterator[tuple[str, UdpCanary, TcpCanary]]:
    udp, tcp = UdpCanary(), TcpCanary()
    handler = type("RtcPage", (_RtcPage,), {"udp": udp.port, "tcp": tcp.port})
    server = _serve(handler)
    yield next(server), udp, tcp
    server.close()
    udp.close()
    tcp.close()


async def test_webrtc_opens_no_socket_beside_the_proxy(ctx: AgentContext, rtc_page) -> None:
    url, udp, tcp = rtc_page
    async with WebSession(ctx) as web:
        job = await web.browser()

        async def visit() -> str:
            page = await job.context.new_page()
            try:
                await page.goto(url)
                await page.locator("#done").wait_for(timeout=20_000)
                return await page.title()
            finally:
                await page.close()

        title = await browsers.call(visit())
    assert title == "constructors:0"  # not even from a fresh frame
    assert udp.received() == 0 and tcp.connections == 0
