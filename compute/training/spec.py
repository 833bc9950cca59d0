"""What a user submits for a training job, and what the API answers about it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from compute.market.demand import PriceRange
from compute.provisions import Resources


class TrainerConfig(BaseModel):
    """The built-in trainer: a multilayer perceptron regressed (mean squared error) on a CSV dataset."""

    hidden: list[int] = Field(
        default_factory=lambda: [32], max_length=8, description="Widths of the hidden layers; empty: a linear model"
    )
    activation: Literal["tanh", "relu"] = "tanh"
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0, le=10, description="Learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    batch_size: int = Field(32, ge=1, le=65536, description="Rows per rank per step")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the weights and the data order")
    target_columns: int = Field(1, ge=1, le=1024, description="The dataset's last columns are the targets")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        if any(not 1 <= width <= 4096 for width in value):
            raise ValueError("each hidden width must be between 1 and 4096")
        return value


class TrainingIn(PriceRange):
    dataset_cid: str = Field(
        ...,
        min_length=1,
        max_length=200,
        description="A CSV of numbers in your Stxrage "
        "storage: one row per example, the last `target_columns` columns the targets",
    )
    world_size: int = Field(..., ge=1, le=256, description="Ranks, each on its own provider")
    steps: int = Field(..., ge=1, le=10_000_000, description="Optimizer steps")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints stored in Stxrage")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    backend: Literal["gloo", "nccl"] = Field("gloo", description="gloo on CPUs, nccl on GPUs")
    resources: Resources = Field(default_factory=Resources, validate_default=True, description="What each rank leases")
    timeout_s: float = Field(3600, gt=0, le=7 * 86400, description="Longest one generation of the ranks may run")
    collective_timeout_s: float = Field(60, ge=1, le=3600, description="Ranks give up on a peer silent this long")
    max_restarts: int = Field(3, ge=0, le=100, description="Restarts from the latest checkpoint after a lost rank")

    @field_validator("resources")
    @classmethod
    def _gpu(cls, value: Resources, info: ValidationInfo) -> Resources:
        if info.data.get("backend") == "nccl" and not value.gpu_count:
            raise ValueError("the nccl backend needs gpu_count of at least 1 per rank")
        return value


State = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Checkpoint(BaseModel):
    step: int
    generation: int
    cid: str = Field(description="The checkpoint (model, optimizer, step, RNG state) in the owner's Stxrage")
    size: int
    created_at: datetime


class LossPoint(BaseModel):
    step: int
    loss: float = Field(description="Mean over the ranks of this step's batch loss")
    generation: int


class RankOut(BaseModel):
    generation: int
    rank: int
    job_id: str
    provider: str
    lease_id: str
    status: str
    error: str | None
    cost_gwei: int


class TrainingOut(BaseModel):
    id: str
    owner: str
    state: State
    generation: int = Field(description="1 for the first run of the ranks; each restart adds one")
    step: int = Field(description="Steps done, as far as the ranks have reported")
    spec: TrainingIn
    final_loss: float | None = Field(description="Mean squared error of the final model over the whole dataset")
    error: str | None
    last_checkpoint: Checkpoint | None
    created_at: datetime
    finished_at: datetime | None


class TrainingDetail(TrainingOut):
    checkpoints: list[Checkpoint]
    losses: list[LossPoint]
    ranks: list[RankOut]
