"""A training job as a Kubernetes object: deploy/k8s/training-job.yaml (a Kubeflow PyTorchJob) filled in."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from compute.training.spec import TrainingOut

TEMPLATE = Path(__file__).parents[2] / "deploy" / "k8s" / "training-job.yaml"


def render(job: TrainingOut, image: str, namespace: str = "cxmpute", template: Path = TEMPLATE) -> str:
    """The PyTorchJob running ``job``'s next generation as pods: the Master is rank 0, Workers ranks 1..N-1."""
    doc = yaml.safe_load(template.read_text())
    name = f"training-{job.id[:8]}"
    spec = job.spec
    doc["metadata"].update(name=name, namespace=namespace)
    doc["metadata"]["labels"]["cxmpute.io/training-job"] = job.id
    doc["spec"]["runPolicy"]["suspend"] = False
    replicas = doc["spec"]["pytorchReplicaSpecs"]
    pod = copy.deepcopy(replicas["Master"]["template"])
    pod["metadata"]["labels"]["cxmpute.io/training-job"] = job.id
    container = pod["spec"]["containers"][0]
    container["image"] = image
    rank_job = {
        "training_id": job.id,
        "generation": job.generation + 1,
        "world_size": spec.world_size,
        "steps": spec.steps,
        "checkpoint_every": spec.checkpoint_every,
        "trainer": spec.trainer.model_dump(),
        "backend": spec.backend,
        "collective_timeout_s": spec.collective_timeout_s,
        "join_timeout_s": spec.timeout_s,
        "threads": spec.resources.cpu,
        "resume_step": job.last_checkpoint.step if job.last_checkpoint else 0,
    }
    env = {e["name"]: e for e in container["env"]}
    env["CXMPUTE_RANK_URL"]["valueFrom"]["secretKeyRef"].update(name=name, optional=False)
    env["CXMPUTE_RANK_JOB"]["value"] = json.dumps(rank_job, separators=(",", ":"))
    quantity = {"cpu": str(spec.resources.cpu), "memory": f"{spec.resources.memory_mb}Mi"}
    if spec.resources.gpu_count:
        quantity["nvidia.com/gpu"] = str(spec.resources.gpu_count)
    container["resources"] = {"requests": dict(quantity), "limits": dict(quantity)}
    replicas["Master"]["template"] = pod
    if spec.world_size > 1:
        replicas["Worker"].update(replicas=spec.world_size - 1, template=copy.deepcopy(pod))
    else:
        del replicas["Worker"]
    return yaml.safe_dump(doc, sort_keys=False)
