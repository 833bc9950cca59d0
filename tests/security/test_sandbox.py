"""A hostile job against each runtime that runs untrusted code (``sandbox``: bubblewrap, ``container``: Docker):
the RAM it keeps anywhere counts within its ``memory_mb``, and the kernel interfaces and host paths an escape
goes through are shut. The host (the platform's secrets and database, a canary folder, a host process and host
services) must be unchanged afterwards; the ``host`` fixture checks that after each test."""

from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path

import pytest

from compute.runtimes import Limits, SandboxSpec
from compute.runtimes.code import run_code
from compute.runtimes.seccomp import REFUSED
from tests.support.escapes import assert_all_denied, attempts

_spec = importlib.util.spec_from_file_location(
    "runtimes_fixtures", Path(__file__).parents[1] / "compute" / "runtimes" / "conftest.py"
)
_fixtures = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_fixtures)
runtime, host, run_job = _fixtures.runtime, _fixtures.host, _fixtures.run_job

pytestmark = pytest.mark.usefixtures("host")
MEMORY_MB = 128
_X86 = platform.machine() == "x86_64"
CLONE, CLONE3 = (56, 435) if _X86 else (220, 435)


def nr(name: str) -> int:
    """This machine's number of a syscall the runtimes refuse."""
    return REFUSED[name][0 if _X86 else 1]


def _shared_memory_mb() -> float:
    """The host's RAM held by tmpfs, shared memory and memfds (``Shmem`` in /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no Shmem in /proc/meminfo")


async def _hold(runtime, code: str) -> tuple[object, float]:
    """Run ``code`` in a job of MEMORY_MB with a far larger disk quota; return its result and how much the host's
    shared memory grew while what it wrote is still there (before the sandbox is stopped)."""
    spec = SandboxSpec(
        limits=Limits(
            memory_mb=MEMORY_MB, disk_mb=1024, file_size_mb=1024, wall_seconds=60, cpu_seconds=60, processes=32
        )
    )
    before = _shared_memory_mb()
    sandbox = await runtime.start(spec)
    try:
        result = await run_code(sandbox, runtime, code)
        return result, _shared_memory_mb() - before
    finally:
        await sandbox.stop()


FILL = """
import os
written = 0
try:
    with open({path!r}, 'wb') as fh:
        for _ in range(512):
            fh.write(b'x' * 2**20)
            fh.flush()
            written += 2**20
except OSError as e:
    pass
written // 2**20
"""


async def test_scratch_is_ram_counted_within_the_job_memory(runtime):
    """A 128 MiB job with a 1 GiB disk quota writes 512 MiB to its scratch: the write fails (no space, or the job
    is killed) and the host's shared memory grows by no more than the job's memory."""
    result, grown = await _hold(runtime, FILL.format(path="fill.bin"))
    assert result.status in ("ok", "error", "killed"), result
    if result.status == "error":  # a full scratch has no room left for the result
        assert "No space left on device" in result.stderr + (result.error or ""), result
    if result.status == "ok":
        assert result.result <= MEMORY_MB, result.result
    assert grown <= MEMORY_MB + 16, f"the host's shared memory grew by {grown:.0f} MiB"


HOLD = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
held, fds = 0, []
try:
    for i in range(8):  # memfds written, never mapped
        fd = os.memfd_create('hold-%d' % i)
        fds.append(fd)
        for _ in range(32):
            os.write(fd, b'x' * 2**20)
            held += 1
    for i in range(8):  # System V segments, filled then detached: they outlive the mapping
        seg = libc.shmget(0, 32 * 2**20, 0o1600)
        if seg < 0:
            raise OSError(ctypes.get_errno(), 'shmget')
        at = libc.shmat(seg, None, 0)
        if at in (None, 2**64 - 1):
            raise OSError(ctypes.get_errno(), 'shmat')
        ctypes.memset(ctypes.c_void_p(at), 1, 32 * 2**20)
        libc.shmdt(ctypes.c_void_p(at))
        held += 32
except (OSError, MemoryError):
    pass
held
"""


async def test_ram_outside_the_address_space_is_counted_too(runtime):
    """memfds and System V shared memory hold RAM no rlimit counts: together they stay within the job's memory."""
    result, grown = await _hold(runtime, HOLD)
    assert result.status in ("ok", "killed"), result
    if result.status == "ok":
        assert result.result <= MEMORY_MB, result.result
    assert grown <= MEMORY_MB + 16, f"the host's shared memory grew by {grown:.0f} MiB"


async def test_io_uring_is_refused(runtime, run_job):
    """io_uring's ring bypasses the per-syscall filter and has been a rich source of kernel bugs."""
    result = await run_job(
        runtime,
        attempts(
            {
                "io_uring_setup": f"ok(libc.syscall({nr('io_uring_setup')}, 4, ctypes.create_string_buffer(120)))",
                "io_uring_enter": f"ok(libc.syscall({nr('io_uring_enter')}, 0, 1, 0, 0, None, 0))",
                "io_uring_register": f"ok(libc.syscall({nr('io_uring_register')}, 0, 0, None, 0))",
            }
        ),
    )
    assert_all_denied(result)
    assert {outcome.split()[1] for outcome in result.result.values()} == {"EPERM"}, result.result


async def test_namespaces_and_mounts_are_shut(runtime, run_job):
    flags = {
        "mount": 0x20000,
        "uts": 0x04000000,
        "ipc": 0x08000000,
        "net": 0x40000000,
        "pid": 0x20000000,
        "cgroup": 0x02000000,
        "user": 0x10000000,
        "time": 0x80,
    }
    snippets = {f"unshare_{name}": f"ok(libc.unshare({flag}))" for name, flag in flags.items()}
    snippets |= {
        f"setns_{ns}": f"ok(libc.setns(os.open('/proc/1/ns/{ns}', os.O_RDONLY), 0))"
        for ns in ("mnt", "net", "pid", "user")
    }
    snippets |= {
        "mount_proc": "ok(libc.mount(b'proc', b'/tmp', b'proc', 0, None))",
        "remount_root_rw": "ok(libc.mount(None, b'/', None, 0x20 | 0x1000, None))",
        "fsopen": f"ok(libc.syscall({nr('fsopen')}, b'tmpfs', 0))",
        "open_tree": f"ok(libc.syscall({nr('open_tree')}, -100, b'/', 1))",
        "pivot_root": f"ok(libc.syscall({nr('pivot_root')}, b'/tmp', b'/tmp'))",
        "clone_new_user": f"ok(libc.syscall({CLONE}, 0x10000000 | 17, 0, 0, 0, 0))",
        "clone3": f"ok(libc.syscall({CLONE3}, None, 0))",
    }
    assert_all_denied(await run_job(runtime, attempts(snippets)))


async def test_other_processes_memory_and_the_kernel_are_out_of_reach(runtime, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "ptrace_attach_parent": "ok(libc.ptrace(16, os.getppid(), None, None))",
                "ptrace_traceme": "ok(libc.ptrace(0, 0, None, None))",
                "process_vm_readv": f"ok(libc.syscall({nr('process_vm_readv')}, os.getppid(), None, 0, None, 0, 0))",
                "proc_parent_mem": "open('/proc/%d/mem' % os.getppid(), 'rb').read(1)",
                "kernel_log": f"ok(libc.syscall({nr('syslog')}, 3, ctypes.create_string_buffer(4096), 4096))",
                "kmsg": "open('/dev/kmsg', 'rb').read(1)",
                "add_key": f"ok(libc.syscall({nr('add_key')}, b'user', b'k', b'v', 1, -3))",
                "keyctl_session": f"ok(libc.syscall({nr('keyctl')}, 1, None))",
                "bpf_map": f"ok(libc.syscall({nr('bpf')}, 0, ctypes.create_string_buffer(72), 72))",
                "perf_event_open": f"ok(libc.syscall({nr('perf_event_open')}, ctypes.create_string_buffer(128), 0, -1, -1, 0))",  # noqa: E501
                "userfaultfd": f"ok(libc.syscall({nr('userfaultfd')}, 0))",
                "finit_module": f"ok(libc.syscall({nr('finit_module')}, 0, b'', 0))",
                "open_by_handle_at": f"ok(libc.syscall({nr('open_by_handle_at')}, -100, ctypes.create_string_buffer(136), 0))",  # noqa: E501
                "kexec_load": f"ok(libc.syscall({nr('kexec_load')}, 0, 0, None, 0))",
            }
        ),
    )
    assert_all_denied(result)


async def test_raw_network_and_devices_are_shut(runtime, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "packet_socket": "socket.socket(17, socket.SOCK_RAW, 0x0300)",
                "raw_ip_socket": "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)",
                "raw_icmp_socket": "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
                "dev_mem": "open('/dev/mem', 'rb').read(1)",
                "dev_port": "open('/dev/port', 'rb').read(1)",
                "block_device": "open('/dev/vda', 'rb').read(1)",
                "mknod_memory": "os.mknod('mem', 0o20600, os.makedev(1, 1))",
                "mknod_disk": "os.mknod('/tmp/disk', 0o60600, os.makedev(8, 0))",
            }
        ),
    )
    assert_all_denied(result)


async def test_host_paths_and_kernel_knobs_cannot_be_written(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "core_pattern": "open('/proc/sys/kernel/core_pattern', 'w').write('|/scratch/x')",
                "sysrq_trigger": "open('/proc/sysrq-trigger', 'w').write('b')",
                "cgroup_release_agent": "open('/sys/fs/cgroup/memory/release_agent', 'w').write('/scratch/x')",
                "uevent_helper": "open('/sys/kernel/uevent_helper', 'w').write('/scratch/x')",
                "proc_1_root_secret": f"open('/proc/1/root' + {str(host.secret_file)!r}).read()",
                "proc_1_root_canary": f"open('/proc/1/root' + {str(host.canary_dir / 'canary.txt')!r}, 'w').write('x')",
                "proc_self_cwd_up": "open('/proc/self/cwd/../../etc/passwd', 'a').write('x')",
                "hard_link_host_file": f"os.link({str(host.secret_file)!r}, 'linked')",
                "usr_lib": "open('/usr/lib/os-release', 'a').write('x')",
            }
        ),
    )
    assert_all_denied(result, host.secret)


async def test_a_syscall_through_another_abi_ends_the_job(runtime, run_job):
    """x32 numbers bypass a filter written for x86-64 numbers: the process is killed, not let through."""
    result = await run_job(
        runtime,
        "import ctypes\nctypes.CDLL(None).syscall(0x40000000 | 425, 4, "
        "ctypes.create_string_buffer(120))\nprint('survived')\n'survived'",
    )
    assert result.status != "ok" and "survived" not in result.stdout, result


async def test_a_thread_bomb_is_bounded_by_the_process_limit(runtime, run_job):
    result = await run_job(
        runtime,
        """
import threading, time
started = 0
try:
    for _ in range(5000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        started += 1
except RuntimeError:
    pass
started
""",
        processes=32,
        wall_seconds=20,
    )
    assert result.status == "ok", result
    assert result.result < 32, result.result
