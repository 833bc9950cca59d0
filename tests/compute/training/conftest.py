"""A small regression dataset, and the single-process run every distributed run is compared with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute.training import trainer
from compute.training.spec import TrainerConfig


@pytest.fixture(scope="session")
def dataset_csv() -> bytes:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(512, 4))
    y = np.tanh(x @ np.array([1.0, -2.0, 0.5, 3.0])) + 0.05 * rng.normal(size=512)
    return "\n".join(",".join(f"{v:.6f}" for v in row) for row in np.c_[x, y]).encode()


def single_process_loss(data: bytes, config: TrainerConfig, world_size: int, steps: int) -> float:
    """The same steps in one process, without torch.distributed: each step trains on the union of every rank's
    batch, which is what averaging the ranks' gradients amounts to."""
    dataset = trainer.parse_dataset(data, config)
    model = trainer.build_model(config, dataset.x.shape[1], dataset.y.shape[1])
    optimizer = trainer.build_optimizer(config, model)
    for step in range(steps):
        rows = torch.tensor(
            [
                i
                for rank in range(world_size)
                for i in trainer.batch_indices(len(dataset), config, world_size, rank, step)
            ]
        )
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(dataset.x[rows]), dataset.y[rows]).backward()
        optimizer.step()
    return trainer.dataset_loss(model, dataset)
