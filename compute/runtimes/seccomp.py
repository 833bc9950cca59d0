"""The seccomp policy of every runtime that runs untrusted code: shuts the kernel interfaces a job has no
use for.

Without capabilities a job can already do little, but an unprivileged process may still create a
user namespace (and with it a fresh set of capabilities over new namespaces) and reach rarely
hardened kernel code (io_uring, BPF, perf, keyrings, userfaultfd, the kernel log). The policy refuses
those with EPERM, makes ``clone3`` look absent (its flags live in memory a filter cannot read; libc
falls back to ``clone``), refuses ``clone``/``unshare`` with ``CLONE_NEWUSER``, and kills any process
that makes a syscall through another ABI (32-bit x86, x32) where the numbers below would not apply.

One table serves both forms: :func:`program` (raw BPF, as ``bwrap --seccomp`` reads it) for the
sandbox runtime and :func:`docker_profile` (the engine's JSON) for containers, so a job meets the same
kernel whichever runtime runs it. The engine's own default profile differs between engine versions
(io_uring is open in older ones), which is why containers get this one instead.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import struct
from functools import cache

_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

# machine: (audit arch, the engine's name for it, clone, unshare, clone3)
_ARCHES = {
    "x86_64": (0xC000003E, "SCMP_ARCH_X86_64", 56, 272, 435),
    "aarch64": (0xC00000B7, "SCMP_ARCH_AARCH64", 220, 97, 435),
}

# Refused with EPERM: name -> (x86_64 number, aarch64 number; None where the call does not exist there).
REFUSED: dict[str, tuple[int, int | None]] = {
    # another process's memory, and the kernel's own
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438),
    "syslog": (103, 116),
    "lookup_dcookie": (212, 18),
    # the mount tree and namespaces
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "setns": (308, 268),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    "fanotify_init": (300, 262),
    # kernel code a job never needs: modules, kexec, keyrings, BPF, perf, userfaultfd, io_uring
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    # the machine itself
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "vhangup": (153, 58),
    "nfsservctl": (180, 42),
    "uselib": (134, None),
    "sysfs": (139, None),
    "iopl": (172, None),
    "ioperm": (173, None),
    "create_module": (174, None),
    "get_kernel_syms": (177, None),
    "query_module": (178, None),
}


def _refused(machine: str) -> dict[str, int]:
    column = 0 if machine == "x86_64" else 1
    return {name: numbers[column] for name, numbers in REFUSED.items() if numbers[column] is not None}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter as raw ``struct sock_filter`` instructions, as ``bwrap --seccomp`` reads them."""
    machine = machine or platform.machine()
    arch, _, clone, unshare, clone3 = _ARCHES[machine]
    deny_eperm = _ins(_RET, _ERRNO | errno.EPERM)
    body = [
        _ins(_LD_W_ABS, 4),  # arch
        _ins(_JEQ, arch, 1, 0),
        _ins(_RET, _KILL_PROCESS),
        _ins(_LD_W_ABS, 0),  # syscall number
        _ins(_JGE, _X32_BIT, 0, 1),
        _ins(_RET, _KILL_PROCESS),
        _ins(_JEQ, clone3, 0, 1),
        _ins(_RET, _ERRNO | errno.ENOSYS),
    ]
    for nr in (clone, unshare):
        body += [
            _ins(_JEQ, nr, 0, 4),
            _ins(_LD_W_ABS, 16),  # low half of the first argument: the flags
            _ins(_JSET, _CLONE_NEWUSER, 0, 1),
            deny_eperm,
            _ins(_RET, _ALLOW),
        ]
    for nr in sorted(_refused(machine).values()):
        body += [_ins(_JEQ, nr, 0, 1), deny_eperm]
    body.append(_ins(_RET, _ALLOW))
    return b"".join(body)


@cache
def docker_profile(machine: str | None = None) -> str:
    """The same policy as a Docker seccomp profile (JSON), for ``security_opt=["seccomp=..."]``. Only the
    machine's own architecture is listed, so the engine refuses calls made through any other ABI."""
    machine = machine or platform.machine()
    _, name, *_ = _ARCHES[machine]
    new_user = [{"index": 0, "value": _CLONE_NEWUSER, "valueTwo": _CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}]
    return json.dumps(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": [name],
            "syscalls": [
                {"names": sorted(_refused(machine)), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
                {"names": ["clone", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM, "args": new_user},
            ],
        }
    )


def supported() -> bool:
    return platform.machine() in _ARCHES


def program_fd() -> int:
    """A pipe's read end holding the filter, to hand to bwrap (which reads it to the end)."""
    data = program()
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r
