"""The built-in trainer: the model, the data order and the checkpoint format every rank shares.

Everything a step depends on is a function of the config, the dataset and the step number: weights start
from the seed, and the batch of step ``s`` on rank ``r`` is the ``s``-th batch of a ``DistributedSampler``
(seeded, epoch ``s // batches_per_epoch``). A run resumed from a checkpoint therefore takes exactly the
steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from compute.training.spec import TrainerConfig
from cxmpute.errors import CxmputeError


class DatasetError(CxmputeError):
    status_code = 422


@dataclass
class Dataset:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def parse_dataset(data: bytes, config: TrainerConfig) -> Dataset:
    """A CSV of numbers (no header): the last ``target_columns`` columns are the targets."""
    import numpy as np

    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"the dataset is not a CSV of numbers: {exc}", field="dataset_cid") from None
    if table.shape[1] <= config.target_columns:
        raise DatasetError(
            f"the dataset has {table.shape[1]} columns; it needs features besides its "
            f"{config.target_columns} target column(s)",
            field="dataset_cid",
        )
    tensor = torch.from_numpy(table)
    return Dataset(
        x=tensor[:, : -config.target_columns].contiguous(), y=tensor[:, -config.target_columns :].contiguous()
    )


def check_fits(dataset: Dataset, config: TrainerConfig, world_size: int) -> None:
    if len(dataset) // world_size < config.batch_size:
        raise DatasetError(
            f"the dataset has {len(dataset)} rows: too few for {world_size} rank(s) of batch_size {config.batch_size}",
            field="dataset_cid",
        )


def build_model(config: TrainerConfig, features: int, targets: int) -> nn.Module:
    """The model, its weights drawn from the config's seed (identical on every rank)."""
    torch.manual_seed(config.seed)
    layers: list[nn.Module] = []
    width = features
    for hidden in config.hidden:
        layers += [nn.Linear(width, hidden), nn.Tanh() if config.activation == "tanh" else nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, targets))
    return nn.Sequential(*layers)


def build_optimizer(config: TrainerConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)


def batch_indices(rows: int, config: TrainerConfig, world_size: int, rank: int, step: int) -> list[int]:
    """The rows rank ``rank`` trains on at ``step`` (0-based)."""
    sampler = DistributedSampler(
        range(rows), num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed, drop_last=True
    )
    per_epoch = len(sampler) // config.batch_size
    sampler.set_epoch(step // per_epoch)
    start = (step % per_epoch) * config.batch_size
    return list(sampler)[start : start + config.batch_size]


def dataset_loss(model: nn.Module, dataset: Dataset) -> float:
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(dataset.x), dataset.y))


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
        },
        buf,
    )
    return buf.getvalue()


def load_checkpoint(data: bytes, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore the state saved by :func:`save_checkpoint`; returns the steps it had done."""
    # weights_only: a checkpoint comes from another provider's machine and must not be able to run code here.
    state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


@dataclass
class Hooks:
    """How a rank reports: losses in batches, checkpoints as bytes (rank 0 only)."""

    losses: Callable[[list[tuple[int, float]]], None]
    checkpoint: Callable[[int, bytes], None]
    report_every: int = 10


def train_rank(
    config: TrainerConfig,
    dataset: Dataset,
    *,
    steps: int,
    checkpoint_every: int,
    rank: int,
    world_size: int,
    hooks: Hooks,
    resume: bytes | None = None,
    device: torch.device | None = None,
) -> float | None:
    """Run this rank's steps under DistributedDataParallel (the process group must be initialised);
    returns the final model's loss over the whole dataset on rank 0, None elsewhere."""
    from torch.nn.parallel import DistributedDataParallel

    device = device or torch.device("cpu")
    model = build_model(config, dataset.x.shape[1], dataset.y.shape[1]).to(device)
    optimizer = build_optimizer(config, model)
    done = load_checkpoint(resume, model, optimizer) if resume else 0
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    x, y = dataset.x.to(device), dataset.y.to(device)
    pending: list[tuple[int, float]] = []
    for step in range(done, steps):
        rows = torch.tensor(batch_indices(len(dataset), config, world_size, rank, step), device=device)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(ddp(x[rows]), y[rows])
        loss.backward()
        optimizer.step()
        pending.append((step + 1, float(loss.detach())))
        if len(pending) >= hooks.report_every or step + 1 == steps:
            hooks.losses(pending)
            pending = []
        if rank == 0 and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            hooks.checkpoint(step + 1, save_checkpoint(model, optimizer, step + 1))
    return dataset_loss(model.cpu(), dataset) if rank == 0 else None
