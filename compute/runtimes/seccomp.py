"""A seccomp filter for sandbox jobs: shuts the kernel interfaces a job has no use for.

Without capabilities a job can already do little, but an unprivileged process may still create a
user namespace (and with it a fresh set of capabilities over new namespaces) and reach rarely
hardened kernel code (BPF, perf, keyrings, userfaultfd). The filter refuses those with EPERM, makes
``clone3`` look absent (its flags live in memory a filter cannot read; libc falls back to
``clone``), refuses ``clone``/``unshare`` with ``CLONE_NEWUSER``, and kills any process that makes a
syscall through another ABI (32-bit x86, x32) where the numbers below would not apply.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

# machine: (audit arch, clone, unshare, clone3, refused syscalls)
_TABLES = {
    "x86_64": (0xC000003E, 56, 272, 435,
               {101: "ptrace", 165: "mount", 166: "umount2", 175: "init_module", 246: "kexec_load",
                248: "add_key", 249: "request_key", 250: "keyctl", 298: "perf_event_open", 304: "open_by_handle_at",
                308: "setns", 313: "finit_module", 321: "bpf", 323: "userfaultfd", 155: "pivot_root",
                161: "chroot", 134: "uselib", 139: "sysfs", 425: "io_uring_setup"}),
    "aarch64": (0xC00000B7, 220, 97, 435,
                {117: "ptrace", 40: "mount", 39: "umount2", 105: "init_module", 104: "kexec_load",
                 217: "add_key", 218: "request_key", 219: "keyctl", 241: "perf_event_open",
                 265: "open_by_handle_at", 268: "setns", 273: "finit_module", 280: "bpf", 282: "userfaultfd",
                 41: "pivot_root", 51: "chroot", 425: "io_uring_setup"}),
}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter as raw ``struct sock_filter`` instructions, as ``bwrap --seccomp`` reads them."""
    arch, clone, unshare, clone3, refused = _TABLES[machine or platform.machine()]
    deny_eperm = _ins(_RET, _ERRNO | errno.EPERM)
    body = [_ins(_LD_W_ABS, 4),                     # arch
            _ins(_JEQ, arch, 1, 0),
            _ins(_RET, _KILL_PROCESS),
            _ins(_LD_W_ABS, 0),                     # syscall number
            _ins(_JGE, _X32_BIT, 0, 1),
            _ins(_RET, _KILL_PROCESS),
            _ins(_JEQ, clone3, 0, 1),
            _ins(_RET, _ERRNO | errno.ENOSYS)]
    for nr in (clone, unshare):
        body += [_ins(_JEQ, nr, 0, 4),
                 _ins(_LD_W_ABS, 16),               # low half of the first argument: the flags
                 _ins(_JSET, _CLONE_NEWUSER, 0, 1),
                 deny_eperm,
                 _ins(_RET, _ALLOW)]
    for nr in sorted(refused):
        body += [_ins(_JEQ, nr, 0, 1), deny_eperm]
    body.append(_ins(_RET, _ALLOW))
    return b"".join(body)


def supported() -> bool:
    return platform.machine() in _TABLES


def program_fd() -> int:
    """A pipe's read end holding the filter, to hand to bwrap (which reads it to the end)."""
    data = program()
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r
