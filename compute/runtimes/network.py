"""Network for a job that is granted it: the internet, never the host's or the private network's services.

Sandbox jobs get their own network namespace connected by slirp4netns; container jobs and service
replicas get the engine's bridge, fenced the same way (:func:`fence_container`).

The job never shares the host's network namespace, so the host's loopback services (databases with
trust authentication, the platform API) stay out of reach: slirp4netns runs with host loopback
disabled, and the job's namespace gets ``prohibit`` routes for private, link-local and shared ranges
and for every address of the host itself. What remains is the public internet, through user-space
NAT. bwrap holds the job (``--block-fd``) until all of this is in place.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import shutil
import socket
import subprocess
import time

SLIRP_NET = ipaddress.ip_network("10.0.2.0/24")  # slirp4netns's default: gateway .2, DNS .3, job .100
BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
_SETUP_SECONDS = 10.0


class NetworkSetupError(RuntimeError):
    pass


def available() -> str | None:
    for tool in ("slirp4netns", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian packages slirp4netns, util-linux, iproute2)"
    return None


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses: reachable through NAT otherwise, and they are not the internet."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    found = {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}
    try:
        found.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(found)


def fence(pid: int, keep: ipaddress.IPv4Network | None = None, commands: tuple[str, ...] = ()) -> None:
    """Refuse, inside the network namespace of ``pid``, every private range and host address (except
    the ``keep`` network the namespace's own link lives on), after running ``commands`` there."""
    routes = [*BLOCKED, *(f"{a}/32" for a in host_addresses() if keep is None or ipaddress.ip_address(a) not in keep)]
    script = "\n".join([*commands, *(f"route add prohibit {r}" for r in routes)]) + "\n"
    done = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-batch", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=_SETUP_SECONDS,
    )
    if done.returncode != 0:
        raise NetworkSetupError(f"fencing the job's network failed: {done.stderr.strip()}")


def fence_container(container) -> None:
    """Keep a container on the engine's bridge to the internet: no host, bridge neighbour or private
    address. Its link's own route goes (other containers share the bridge); the gateway stays the next
    hop without being a destination."""
    container.reload()
    net = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))
    subnet = ipaddress.ip_network(f"{net['IPAddress']}/{net['IPPrefixLen']}", strict=False)
    fence(
        container.attrs["State"]["Pid"],
        commands=(f"route replace default via {net['Gateway']} dev eth0 onlink", f"route del {subnet} dev eth0"),
    )


def _wait_for_loopback(pid: int, deadline: float) -> None:
    """bwrap reports the namespaces before its child has brought ``lo`` up over netlink; changing the
    namespace meanwhile makes that fail, so wait until the loopback is up."""
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link", "show", "lo"],
            capture_output=True,
            text=True,
            timeout=_SETUP_SECONDS,
        )
        if shown.returncode != 0:
            raise NetworkSetupError(f"the sandbox ended while its network was set up: {shown.stderr.strip()}")
        if ",UP" in shown.stdout.split(">")[0]:
            return
        time.sleep(0.001)
    raise NetworkSetupError("the sandbox did not bring its loopback up in time")


def _read_until(fd: int, deadline: float, parse) -> object:
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise NetworkSetupError("the sandbox did not report its namespaces in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise NetworkSetupError("the sandbox exited before its network was set up")
        data += chunk
        try:
            return parse(data)
        except ValueError:
            continue


class GrantedNetwork:
    """One job's network. Pass :meth:`bwrap_args` and :attr:`pass_fds` to bwrap, then :meth:`attach`."""

    def __init__(self) -> None:
        self._info_r, self._info_w = os.pipe()
        self._block_r, self._block_w = os.pipe()
        self._open = {self._info_r, self._info_w, self._block_r, self._block_w}
        self.slirp: subprocess.Popen | None = None

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    @property
    def pass_fds(self) -> tuple[int, int]:
        return self._info_w, self._block_r

    def bwrap_args(self) -> list[str]:
        return ["--unshare-net", "--info-fd", str(self._info_w), "--block-fd", str(self._block_r)]

    def attach(self) -> None:
        """Once bwrap runs: connect its namespace, fence it, then let the job start."""
        self._close(self._info_w)
        self._close(self._block_r)
        deadline = time.monotonic() + _SETUP_SECONDS
        try:
            info = _read_until(self._info_r, deadline, json.loads)
            pid = int(info["child-pid"])
            _wait_for_loopback(pid, deadline)
            ready_r, ready_w = os.pipe()
            try:
                self.slirp = subprocess.Popen(
                    [
                        "slirp4netns",
                        "--configure",
                        "--mtu=65520",
                        "--disable-host-loopback",
                        f"--ready-fd={ready_w}",
                        str(pid),
                        "tap0",
                    ],
                    pass_fds=(ready_w,),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                os.close(ready_w)
                _read_until(ready_r, deadline, lambda d: d if d.startswith(b"1") else int("x"))
            finally:
                os.close(ready_r)
            fence(pid, keep=SLIRP_NET)
            os.write(self._block_w, b"1")
        finally:
            self._close(self._info_r)
        # Released only on success: closing the pipe would also let bwrap go on, so after a failure it
        # stays open until the caller has killed bwrap and calls close().
        self._close(self._block_w)

    def close(self) -> None:
        """After the job (or after killing bwrap on a failed attach)."""
        for fd in list(self._open):
            self._close(fd)
        if self.slirp is not None and self.slirp.poll() is None:
            self.slirp.kill()
            self.slirp.wait()
