"""Hardware detection on this machine, and GPU discovery through nvidia-smi's CSV query output."""

from __future__ import annotations

import os
import stat

from compute.providers.hardware import detect


def test_detects_this_machine():
    profile = detect(benchmark_s=0.05)
    assert profile.cpu_count == os.cpu_count() and profile.memory_mb > 0 and profile.benchmark_score > 0
    assert len(profile.digest()) == 32


def test_gpus_come_from_nvidia_smi(tmp_path, monkeypatch):
    # This machine has no GPU: a stand-in prints what `nvidia-smi --query-gpu=name,memory.total
    # --format=csv,noheader,nounits` prints on a two-GPU host.
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\nprintf 'NVIDIA H100 80GB HBM3, 81559\\nNVIDIA H100 80GB HBM3, 81559\\n'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    gpus = detect(benchmark_s=0.01).gpus
    assert [(g.model, g.memory_mb) for g in gpus] == [("NVIDIA H100 80GB HBM3", 81559)] * 2
