"""`cxmpute training manifest`: the job as a Kubeflow PyTorchJob, valid against the Kubernetes models."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from compute.training.manifest import render
from compute.training.rank import RankRun
from compute.training.spec import Checkpoint, TrainingIn, TrainingOut

_spec = importlib.util.spec_from_file_location("k8s_checks", Path(__file__).parents[2] / "deploy" / "test_k8s.py")
k8s_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k8s_checks)


def _job(world_size: int, gpus: int = 0) -> TrainingOut:
    now = datetime.now(UTC)
    spec = TrainingIn(
        dataset_cid="bafy",
        world_size=world_size,
        steps=500,
        checkpoint_every=50,
        price_max_gwei=5,
        backend="nccl" if gpus else "gloo",
        resources={"cpu": 2, "memory_mb": 3072, "gpu_count": gpus},
    )
    return TrainingOut(
        id="5f0c1a2b-0000-4000-8000-000000000001",
        owner="0xabc",
        state="running",
        generation=1,
        step=120,
        spec=spec,
        final_loss=None,
        error=None,
        created_at=now,
        finished_at=None,
        last_checkpoint=Checkpoint(step=100, generation=1, cid="bafyckpt", size=10, created_at=now),
    )


def test_the_manifest_runs_every_rank_from_the_latest_checkpoint():
    doc = yaml.safe_load(render(_job(4), "registry.local/cxmpute:1", namespace="ml"))
    assert k8s_checks.validate(doc, "job") == []
    assert doc["kind"] == "PyTorchJob" and doc["metadata"]["namespace"] == "ml"
    assert doc["spec"]["runPolicy"]["suspend"] is False
    replicas = doc["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/cxmpute:1"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "3072Mi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["CXMPUTE_RANK_URL"]["valueFrom"]["secretKeyRef"]["name"] == doc["metadata"]["name"]
    rank = RankRun(
        **json.loads(env["CXMPUTE_RANK_JOB"]["value"]), rank=3, rank_url="http://api:8000/x", host="master", port=23456
    )
    assert (rank.generation, rank.world_size, rank.resume_step, rank.threads) == (2, 4, 100, 2)


def test_one_rank_has_no_workers_and_gpus_are_requested():
    doc = yaml.safe_load(render(_job(1, gpus=1), "img"))
    assert set(doc["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    limits = doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
