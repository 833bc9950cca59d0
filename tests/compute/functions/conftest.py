"""Function packages written on the fly, and the sandbox runtime every function test runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.functions import package
from compute.runtimes import runtime_registry
from cxmpute.settings import get_settings

HANDLER = """
import os, time
calls = 0
print("imported")

def handler(event, context):
    global calls
    calls += 1
    event = event or {}
    print("event", event)
    started = time.time()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] * 2**20)
    if event.get("fail"):
        raise ValueError(event["fail"])
    return {"calls": calls, "pid": os.getpid(), "ppid": os.getppid(), "started": started, "ended": time.time(),
            "remaining_ms": context.get_remaining_time_in_millis(), "function": context.function_name,
            "echo": event.get("echo")}
"""


def write_function(root: Path, source: str = HANDLER, module: str = "handler") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    (root / "helper.txt").write_text("data shipped with the function\n")
    return root


@pytest.fixture(autouse=True, scope="module")
def _no_warm_sandboxes_left():
    """Warm interpreters hold sandboxes; later tests (and the host) must not inherit them."""
    yield
    from compute.functions.pool import close_all_pools

    close_all_pools()


@pytest.fixture
def function_dir(tmp_path) -> Path:
    return write_function(tmp_path / "fn")


@pytest.fixture
def package_bytes(function_dir) -> bytes:
    return package.build(function_dir)


@pytest.fixture
def sandbox_runtime():
    registry = runtime_registry(get_settings())
    why = registry.runtime("sandbox").check()
    if why is not None:
        pytest.fail(f"the sandbox runtime must work on every machine that runs the tests: {why}")
    return registry.get("sandbox")
