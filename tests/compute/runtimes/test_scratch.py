"""Scratch left behind by a process that was killed outright is reclaimed by the next one."""

from __future__ import annotations

import os
import subprocess

import pytest

from compute.runtimes.scratch import Scratch, prepare_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scratch directories are tmpfs mounts only as root")


def _mounted(path) -> bool:
    return any(line.split()[4] == str(path) for line in open("/proc/self/mountinfo"))


def test_a_dead_process_scratch_is_unmounted_and_removed_live_ones_are_kept(tmp_path):
    root = tmp_path / "sandbox"
    dead = subprocess.run(["python3", "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # Any pid with a start time that no live process has: the process that owned this folder is gone.
    stale = root / f"{dead.stdout.strip()}-1" / "job"
    stale.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(stale)], check=True)
    (stale / "data").write_text("left by a killed provider")
    prepare_root(root)
    live = Scratch(root, 1, 65534, 65534)
    try:
        assert not _mounted(stale) and not stale.parent.exists()
        assert _mounted(live.path)
        prepare_root(root)  # a second call (another sandbox in the same process) reclaims nothing more
        other = Scratch(root, 1, 65534, 65534)
        assert _mounted(live.path) and live.path.parent == other.path.parent
        other.remove_tree()
    finally:
        live.remove_tree()
    assert not live.path.exists()
