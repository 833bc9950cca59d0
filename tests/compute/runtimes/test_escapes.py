"""The security suite: escapes a hostile job tries, on every runtime. Each must be contained and the
host (the platform's secrets and database, a world-writable canary folder, a host process, a host
service on 127.0.0.1) must be unchanged afterwards; the ``host`` fixture checks that after each test."""

from __future__ import annotations

import asyncio
import os

import pytest

import cxmpute.settings as settings_module
from compute.runtimes import SandboxSpec
from compute.runtimes.network import host_addresses
from compute.runtimes.scratch import BadPath
from tests.support.escapes import assert_all_denied, attempts

pytestmark = pytest.mark.usefixtures("host")


async def test_read_platform_secret_key_and_database(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "secret": f"open({str(host.secret_file)!r}).read()",
                "database": f"open({str(host.database)!r}).read()",
                "data_dir": f"__import__('os').listdir({str(host.secret_file.parent)!r})",
            }
        ),
    )
    assert_all_denied(result, host.secret)


async def test_read_host_system_secrets(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "shadow": "open('/etc/shadow').read()",
                "root_home": "__import__('os').listdir('/root/.ssh')",
                "kcore": "open('/proc/kcore','rb').read(16)",
                "host_disk": "open('/dev/sda','rb').read(16)",
                "platform_source": f"open({settings_module.__file__!r}).read()",
            }
        ),
    )
    assert_all_denied(result)


async def test_write_outside_scratch(runtime, host, run_job):
    marker = f"escape-{os.getpid()}"
    result = await run_job(
        runtime,
        attempts(
            {
                "root": "open('/pwned', 'w').write('x')",
                "usr": "open('/usr/bin/pwned', 'w').write('x')",
                "etc": "open('/etc/passwd', 'a').write('evil::0:0::/:/bin/sh')",
                "canary": f"open({str(host.canary_dir / 'canary.txt')!r}, 'w').write('pwned')",
                "canary_new": f"open({str(host.canary_dir / 'new.txt')!r}, 'w').write('pwned')",
                "data_dir": f"open({str(host.secret_file)!r}, 'w').write('pwned')",
            }
        )
        + f"\nopen('/tmp/{marker}', 'w').write('private tmp')\nout",
    )
    assert_all_denied(result)
    assert not os.path.exists(f"/tmp/{marker}"), "the job's /tmp is the host's"
    assert not os.path.exists("/pwned") and not os.path.exists("/usr/bin/pwned")


async def test_symlinks_planted_for_the_host_are_not_followed(runtime, host):
    code = (
        f"import os\nos.symlink({str(host.secret_file)!r}, 'leak.txt')\n"
        f"os.symlink({str(host.canary_dir)!r}, 'outside')\n"
        f"os.symlink('/', 'root')\nopen('real.txt', 'w').write('fine')\n'planted'"
    )
    sandbox = await runtime.start(SandboxSpec())
    try:
        from compute.runtimes.code import run_code

        result = await run_code(sandbox, runtime, code)
        assert result.result == "planted", result
        listed = {f.path for f in sandbox.list_files()}
        assert "real.txt" in listed and not {"leak.txt", "outside", "root"} & listed
        for path in ("leak.txt", "outside/canary.txt", "root/etc/shadow"):
            with pytest.raises(BadPath):
                sandbox.get_file(path)
        with pytest.raises(BadPath):
            sandbox.put_file("outside/evil.txt", b"pwned")
        sandbox.put_file("leak.txt", b"replaces the link, not its target")
        assert sandbox.get_file("leak.txt") == b"replaces the link, not its target"
    finally:
        await sandbox.stop()
    assert not (host.canary_dir / "evil.txt").exists()


async def test_file_paths_cannot_leave_scratch(runtime, host):
    sandbox = await runtime.start(SandboxSpec())
    try:
        for bad in ("../escape.txt", "/etc/passwd", "a/../../escape.txt", ""):
            with pytest.raises(BadPath):
                sandbox.put_file(bad, b"x")
            with pytest.raises(BadPath):
                sandbox.get_file(bad)
    finally:
        await sandbox.stop()


async def test_proc_root_tricks(runtime, host, run_job):
    code = f"""
import os
seen = {{}}
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for trick in ('root{host.secret_file}', 'root/etc/shadow', 'cwd/secret.key', 'environ'):
            try:
                seen[pid + '/' + trick] = open('/proc/' + pid + '/' + trick, 'rb').read()[:200].decode('latin-1')
            except OSError as e:
                pass
seen
"""
    result = await run_job(runtime, code)
    assert result.status == "ok", result
    leaked = repr(result.result)
    assert host.secret not in leaked and "CXMPUTE" not in leaked and "root:" not in leaked


async def test_host_processes_are_invisible(runtime, host, run_job):
    code = """
import os
procs = {}
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            procs[pid] = open('/proc/%s/cmdline' % pid, 'rb').read().replace(b'\\0', b' ').decode()[:80]
        except OSError:
            procs[pid] = '?'
procs
"""
    result = await run_job(runtime, code)
    assert result.status == "ok", result
    assert len(result.result) <= 6, result.result
    assert not any("pytest" in c or "sleep 300" in c for c in result.result.values())


async def test_cannot_signal_host_processes(runtime, host, run_job):
    result = await run_job(
        runtime,
        f"""
import os, signal
tried = []
for target in ({host.sleeper.pid}, {os.getpid()}, 1):
    try:
        os.kill(target, signal.SIGKILL)
        tried.append('sent')
    except OSError as e:
        tried.append(type(e).__name__)
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
'unreached'
""",
    )
    assert result.status in ("ok", "killed", "error")
    assert host.sleeper.poll() is None


async def test_no_loopback_service_without_grant(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "tcp": f"__import__('socket').create_connection(('127.0.0.1', {host.listener.port}), timeout=2)",
                "tcp6": f"__import__('socket').create_connection(('::1', {host.listener.port}), timeout=2)",
            }
        ),
    )
    assert_all_denied(result)
    assert host.listener.accepted == 0


async def test_no_internet_without_grant(runtime, host, run_job):
    # 198.51.100.1 is TEST-NET-2: never routed, so even a failed containment sends nothing anywhere real.
    result = await run_job(
        runtime,
        attempts(
            {
                "tcp": "__import__('socket').create_connection(('198.51.100.1', 80), timeout=2)",
                "dns": "__import__('socket').getaddrinfo('example.com', 443)",
                "udp": "__import__('socket').socket(2, 2).sendto(b'x', ('198.51.100.1', 53))",
            }
        )
        + "\nout['interfaces'] = sorted(n for _, n in __import__('socket').if_nameindex())\nout",
    )
    interfaces = result.result.pop("interfaces")
    assert interfaces == ["lo"], interfaces
    assert_all_denied(result)


async def test_granted_network_still_keeps_host_services_out(runtime, host, run_job):
    """A grant is for the internet: the host's loopback, its own addresses and private ranges stay shut."""
    targets = {
        "loopback": "127.0.0.1",
        "slirp_gateway": "10.0.2.2",
        "docker_gateway": "172.17.0.1",
        **{f"host_{a}": a for a in host_addresses() if not a.startswith("127.")},
    }
    snippets = {}
    for name, address in targets.items():
        for which, listener in (("local", host.listener), ("wide", host.wide_listener)):
            snippets[f"{name}_{which}"] = (
                f"__import__('socket').create_connection(({address!r}, {listener.port}), timeout=2)"
            )
    result = await run_job(
        runtime,
        attempts(snippets) + "\nout['routes'] = open('/proc/net/route').read()\nout",
        network=True,
        wall_seconds=60,
    )
    routes = result.result.pop("routes")
    assert "00000000" in routes, "a granted job has a default route"
    assert_all_denied(result)


async def test_fork_bomb(runtime, host, run_job, host_processes_with):
    marker = "4242.25"
    result = await run_job(
        runtime,
        f"""
import os, subprocess
children = 0
for _ in range(10000):
    try:
        if os.fork() == 0:
            os.execv('/bin/sleep', ['sleep', '{marker}'])
        children += 1
    except OSError:
        break
children
""",
        wall_seconds=15,
        processes=32,
    )
    assert result.status == "ok", result
    assert result.result < 32, "the process limit did not hold"
    assert host_processes_with(marker) == []


async def test_recursive_fork_bomb_is_contained(runtime, host, run_job, scratch_leftovers):
    result = await run_job(
        runtime,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        wall_seconds=4,
        processes=32,
    )
    assert result.status in ("timeout", "killed")
    await asyncio.sleep(0.2)
    assert scratch_leftovers(runtime) == []


async def test_memory_bomb(runtime, host, run_job):
    result = await run_job(
        runtime,
        """
blocks = []
try:
    for _ in range(64):
        blocks.append(bytearray(64 * 2**20))
    got = 'allocated 4 GiB'
except MemoryError:
    got = 'MemoryError after %d MiB' % (64 * len(blocks))
got
""",
        memory_mb=256,
        wall_seconds=20,
    )
    assert result.result != "allocated 4 GiB", result
    assert result.status in ("ok", "killed")


async def test_disk_fill(runtime, host, run_job, scratch_leftovers):
    result = await run_job(
        runtime,
        """
written = 0
try:
    with open('fill.bin', 'wb') as fh:
        for _ in range(4096):
            fh.write(b'x' * 2**20)
            written += 2**20
except OSError as e:
    pass
import os
small = 0
try:
    for i in range(10000):
        with open('small-%d' % i, 'wb') as fh:
            fh.write(b'y' * 65536)
        small += 1
except OSError:
    pass
# Free the space again so the job can report what it managed to write.
for i in range(small + 1):
    if os.path.exists('small-%d' % i):
        os.remove('small-%d' % i)
os.remove('fill.bin')
written
""",
        disk_mb=16,
        file_size_mb=64,
        wall_seconds=20,
    )
    assert result.status == "ok", result
    assert result.result <= 16 * 2**20
    assert scratch_leftovers(runtime) == []


async def test_private_tmp_and_shared_memory_are_capped(runtime, host, run_job):
    result = await run_job(
        runtime,
        """
import os
out = {}
for folder in ('/tmp', '/dev/shm', '/dev'):
    written = 0
    try:
        for i in range(64):
            with open(os.path.join(folder, 'fill-%d' % i), 'wb') as fh:
                for _ in range(4):
                    fh.write(b'x' * 2**20)
                    written += 2**20
    except OSError:
        pass
    out[folder] = written
out
""",
        wall_seconds=20,
    )
    assert result.status == "ok", result
    assert all(written <= 16 * 2**20 for written in result.result.values()), result.result


async def test_infinite_loop_times_out(runtime, host, run_job):
    result = await run_job(runtime, "while True:\n    pass", wall_seconds=2)
    assert result.status == "timeout" and result.exit_code is None
    assert "2 s" in result.error


async def test_cpu_limit(runtime, host, run_job):
    result = await run_job(runtime, "while True:\n    pass", wall_seconds=30, cpu_seconds=1)
    assert result.status == "killed", result


async def test_huge_stdout_is_capped(runtime, host, run_job):
    result = await run_job(
        runtime,
        "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 2**20)\n'done'",
        output_bytes=65536,
        wall_seconds=30,
    )
    assert result.status == "ok" and result.result == "done"
    assert len(result.stdout) == 65536 and result.stdout_truncated


async def test_environment_holds_no_platform_secrets(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts({"pid1": "open('/proc/1/environ').read()"})
        + """
out['env'] = dict(__import__('os').environ)
try:
    out['self'] = open('/proc/self/environ').read()
except OSError as e:
    out['self'] = 'DENIED'
out
""",
    )
    text = repr(result.result)
    assert host.secret not in text and "ab" * 32 not in text and "CXMPUTE_" not in text
    assert set(result.result["env"]) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PWD",
        "CX_CONTROL",
        "INPUTS_FILE",
        "RESULT_FILE",
        "HOSTNAME",
        "SHLVL",
        "_",
        "LC_CTYPE",
    }


async def test_no_process_outlives_its_job(runtime, host, scratch_leftovers, host_processes_with):
    marker = "4343.75"
    code = f"""
import os, subprocess
subprocess.Popen(['/bin/sh', '-c', 'nohup sleep {marker} >/dev/null 2>&1 &'], start_new_session=True).wait()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['sleep', '{marker}'])
    os._exit(0)
'daemonised'
"""
    sandbox = await runtime.start(SandboxSpec())
    try:
        from compute.runtimes.code import run_code

        result = await run_code(sandbox, runtime, code)
        assert result.result == "daemonised", result
        if runtime.name == "sandbox":  # each command is its own pid namespace: nothing outlives it
            assert host_processes_with(marker) == []
    finally:
        await sandbox.stop()
    assert host_processes_with(marker) == []
    assert scratch_leftovers(runtime) == []


async def test_no_privilege_gain(runtime, host, run_job):
    result = await run_job(
        runtime,
        attempts(
            {
                "setuid": "__import__('os').setuid(0)",
                "chroot": "__import__('os').chroot('/tmp')",
                "mount": "ok(__import__('ctypes').CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, None))",
                "user_namespace": "ok(__import__('ctypes').CDLL(None).unshare(0x10000000))",
                "ptrace_host": f"open('/proc/{os.getpid()}/mem', 'rb').read(1)",
            }
        )
        + "\nout['uid'] = 'DENIED' if __import__('os').getuid() != 0 else 'root'\nout",
    )
    assert_all_denied(result)
