"""The Runtime interface on every runtime: exec, streaming, files, usage, stop; code jobs and sessions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compute.runtimes import ExecResult, Limits, OutputChunk, RuntimeUnavailable, SandboxSpec, runtime_registry
from compute.runtimes.code import SessionManager, run_code
from compute.runtimes.reaper import SessionReaper
from compute.runtimes.seccomp import program
from cxmpute.errors import Forbidden, NotFound
from cxmpute.settings import get_settings


async def test_exec_streams_output_then_result(runtime):
    async with await runtime.start(SandboxSpec()) as sandbox:
        items = [item async for item in sandbox.stream(["/bin/sh", "-c", "echo one; echo two >&2; exit 3"])]
    chunks = [i for i in items if isinstance(i, OutputChunk)]
    result = items[-1]
    assert isinstance(result, ExecResult) and result.exit_code == 3 and not result.ok
    assert b"".join(c.data for c in chunks if c.stream == "stdout") == b"one\n"
    assert b"".join(c.data for c in chunks if c.stream == "stderr") == b"two\n"
    assert result.stdout == b"one\n" and result.stderr == b"two\n"


async def test_files_in_and_out(runtime, scratch_leftovers):
    async with await runtime.start(SandboxSpec()) as sandbox:
        sandbox.put_file("data/in.txt", b"hello")
        result = await sandbox.exec(["/bin/sh", "-c", "cat data/in.txt | wc -c > out.txt; pwd"])
        assert result.ok and result.stdout == b"/scratch\n"
        assert sandbox.get_file("out.txt").strip() == b"5"
        assert {f.path for f in sandbox.list_files()} == {"data/in.txt", "out.txt"}
        sandbox.remove_file("out.txt")
        assert [f.path for f in sandbox.list_files()] == ["data/in.txt"]
    assert scratch_leftovers(runtime) == []


async def test_stopped_sandbox_refuses_work(runtime):
    sandbox = await runtime.start(SandboxSpec())
    await sandbox.stop()
    await sandbox.stop()
    with pytest.raises(RuntimeUnavailable):
        await sandbox.exec(["/bin/true"])


async def test_threads_and_subprocesses_work(runtime, run_job):
    result = await run_job(
        runtime,
        """
import threading, subprocess
box = []
threads = [threading.Thread(target=box.append, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
[sorted(box), subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True).stdout]
""",
    )
    assert result.status == "ok", result
    assert result.result == [list(range(8)), "child\n"]


async def test_usage_is_reported(runtime, run_job):
    result = await run_job(runtime, "sum(i * i for i in range(3_000_000))")
    assert result.status == "ok"
    assert result.usage.cpu_seconds > 0 and result.usage.wall_seconds > 0 and result.usage.max_rss_mb > 0


async def test_code_results_and_failures(runtime):
    async with await runtime.start(SandboxSpec(limits=Limits(wall_seconds=3))) as sandbox:
        ok = await run_code(sandbox, runtime, "print('hi')\nresult = {'n': inputs['n'] * 2}", inputs={"n": 21})
        assert (ok.status, ok.stdout, ok.result, ok.exit_code) == ("ok", "hi\n", {"n": 42}, 0)
        last = await run_code(sandbox, runtime, "x = 2\nx ** 10")
        assert last.result == 1024
        syntax = await run_code(sandbox, runtime, "def broken(:\n    pass")
        assert syntax.status == "error" and syntax.error.startswith("SyntaxError") and "line 1" in syntax.error
        raised = await run_code(sandbox, runtime, "def f():\n    raise ValueError('bad value')\nf()")
        assert raised.status == "error" and "ValueError: bad value" in raised.error and "line 2" in raised.error
        not_json = await run_code(sandbox, runtime, "object()")
        assert not_json.status == "error" and "not JSON" in not_json.error
        shell = await run_code(
            sandbox, runtime, 'cat "$INPUTS_FILE"; echo \'[1, 2]\' > "$RESULT_FILE"', language="shell", inputs={"a": 1}
        )
        assert shell.status == "ok" and shell.stdout == '{"a": 1}' and shell.result == [1, 2]
        shell_fail = await run_code(sandbox, runtime, "echo oops >&2; exit 4", language="shell")
        assert shell_fail.status == "error" and shell_fail.exit_code == 4 and shell_fail.stderr == "oops\n"
        if runtime.name == "sandbox":  # the container's deadline ends the container, tested below
            slow = await run_code(sandbox, runtime, "import time\ntime.sleep(30)")
            assert slow.status == "timeout" and "3 s" in slow.error


async def test_timeout_ends_the_job_and_reports_it(runtime, run_job):
    result = await run_job(runtime, "import time\nprint('started', flush=True)\ntime.sleep(60)", wall_seconds=2)
    assert result.status == "timeout" and result.stdout == "started\n"


async def test_session_cells_share_state(runtime, scratch_leftovers):
    manager = SessionManager()
    session = await manager.open("alice", runtime, SandboxSpec(), idle_timeout=60)
    try:
        first = await session.run("import math\nvalues = [1, 2, 3]\nprint('set')", timeout=10)
        assert first.status == "ok" and first.stdout == "set\n" and first.result is None
        second = await session.run("values.append(4)\nmath.prod(values)", timeout=10)
        assert second.result == 24
        failing = await session.run("values[10]", timeout=10)
        assert failing.status == "error" and "IndexError" in failing.error
        slow = await session.run("import time\ntime.sleep(30)", timeout=1)
        assert slow.status == "timeout" and "TimeoutError" in slow.error
        survived = await session.run("len(values)", timeout=10)
        assert survived.result == 4, "a timed-out cell must keep the session's state"
        child = await session.run("import os\nos.system('echo from-child')", timeout=10)
        assert child.stdout == "from-child\n"
    finally:
        manager.close_all()
    assert scratch_leftovers(runtime) == []


async def test_stuck_cell_ends_the_session(runtime):
    manager = SessionManager()
    session = await manager.open("alice", runtime, SandboxSpec(), idle_timeout=60)
    try:
        stuck = await session.run(
            "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\ntime.sleep(30)", timeout=1
        )
        assert stuck.status == "timeout" and "ended" in stuck.error
        after = await session.run("1", timeout=5)
        assert after.status == "killed" and "new session" in after.error
        await manager.reap()
        assert manager.list("alice") == []
    finally:
        manager.close_all()


async def test_sessions_belong_to_their_owner(runtime):
    manager = SessionManager()
    session = await manager.open("alice", runtime, SandboxSpec(), idle_timeout=60)
    try:
        assert manager.get(session.id, "alice") is session
        with pytest.raises(Forbidden):
            manager.get(session.id, "mallory")
        with pytest.raises(Forbidden):
            await manager.close(session.id, "mallory")
        assert manager.list("mallory") == [] and [s.id for s in manager.list("alice")] == [session.id]
        with pytest.raises(NotFound):
            manager.get("no-such-session", "alice")
        await manager.close(session.id, "alice")
        with pytest.raises(NotFound):
            manager.get(session.id, "alice")
    finally:
        manager.close_all()


async def test_idle_sessions_expire(runtime):
    manager = SessionManager()
    session = await manager.open("alice", runtime, SandboxSpec(), idle_timeout=0.01)
    session.last_used -= 1
    await manager.reap()
    with pytest.raises(NotFound):
        manager.get(session.id, "alice")


async def test_the_reaper_closes_an_abandoned_session_of_an_opened_registry(runtime):
    """Nobody opens or lists sessions again: the background reaper still ends the idle one and its sandbox."""
    sessions = runtime_registry(get_settings()).sessions
    session = await sessions.open("alice", runtime, SandboxSpec(), idle_timeout=0.01)
    try:
        assert session.alive
        session.last_used -= 1
        await SessionReaper().run_once()
        with pytest.raises(NotFound):
            sessions.get(session.id, "alice")
        assert not session.alive
    finally:
        sessions.close_all()


def test_registry_names_the_runtimes_and_refuses_unknown_ones():
    registry = runtime_registry(get_settings())
    assert {"sandbox", "container"} <= set(registry.names())
    assert "sandbox" in registry.offered()
    assert registry.get().name == "sandbox"
    with pytest.raises(RuntimeUnavailable) as err:
        registry.get("vm9000")
    assert err.value.field == "runtime" and err.value.status_code == 400


def test_a_process_without_the_sandbox_capabilities_does_not_offer_it():
    """As in a container that was not given CAP_NET_ADMIN: the runtime says so instead of failing every job."""
    probe = (
        "from compute.runtimes import runtime_registry; from cxmpute.settings import get_settings; "
        "registry = runtime_registry(get_settings()); "
        "print('offered' if 'sandbox' in registry.offered() else registry.runtime('sandbox').check())"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CAP_NET_ADMIN" in done.stdout and "cap_add" in done.stdout, done.stdout
    assert "CAP_SYS_ADMIN" not in done.stdout


def test_seccomp_program_is_well_formed():
    for machine in ("x86_64", "aarch64"):
        code = program(machine)
        assert len(code) % 8 == 0 and len(code) // 8 < 4096


async def test_oversized_result_is_refused_clearly(runtime, run_job):
    result = await run_job(runtime, "'x' * 100_000", output_bytes=2048)
    assert result.status == "error" and "larger than" in result.error and result.result is None


async def test_platform_installed_under_tmp_stays_visible_in_the_sandbox():
    """A checkout under /tmp (as CI may use) keeps its interpreter visible over the private /tmp."""
    import shutil
    import tempfile
    from pathlib import Path

    from compute.runtimes.bubblewrap import BubblewrapRuntime

    runtime = runtime_registry(get_settings()).get("sandbox")
    if not isinstance(runtime, BubblewrapRuntime):
        pytest.skip("the sandbox runtime is not bubblewrap on this machine")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    env = base / "venv"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "marker").write_text("here\n")
    runtime.python_roots = [*runtime.python_roots, env]
    try:
        async with await runtime.start(SandboxSpec()) as sandbox:
            result = await sandbox.exec(["/bin/sh", "-c", f"cat {env}/bin/marker; touch {env}/x || echo ro"])
    finally:
        runtime.python_roots = runtime.python_roots[:-1]
        shutil.rmtree(base)
    assert result.stdout == b"here\nro\n"
