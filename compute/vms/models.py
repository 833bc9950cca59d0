"""What the VM API takes and answers."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from compute.market.demand import MAX_DURATION_S, PriceRange

# The lease outlasts the machine's time by this margin, so the metering loop (every few seconds) always bills the
# last running seconds and ends the lease itself before the market would expire it and refund them unbilled.
LEASE_MARGIN_S = 60
Status = Literal["running", "stopped", "destroyed"]
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SNAPSHOT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"


class VmCreate(PriceRange):
    name: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_-]*$", description="Shown in listings")
    image: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        description="Stxrage CID of a disk image (raw or qcow2) the machine boots from; the disk is an overlay over it",
    )
    kernel: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        description="Stxrage CID of a Linux kernel to boot directly (with or without a disk image)",
    )
    initrd: str | None = Field(None, min_length=1, max_length=120, description="Stxrage CID of its initramfs")
    cmdline: str = Field("console=ttyS0", max_length=2048, description="Kernel command line (with a kernel)")
    ssh_key: str = Field(
        ...,
        max_length=16384,
        description="Your SSH public key (OpenSSH format); the guest "
        "reads it from fw_cfg 'opt/cxmpute/ssh_key' into root's authorized_keys",
    )
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(256, ge=64, le=262144)
    disk_mb: int = Field(1024, ge=1, le=1048576, description="Size of the machine's disk")
    max_duration_s: int = Field(
        3600,
        gt=0,
        le=MAX_DURATION_S - LEASE_MARGIN_S,
        description="The machine's time, "
        "in seconds from creation: it may run until then, when it is stopped and its lease "
        "ended. The lease escrows running all that time; only running seconds are billed "
        "and the rest is refunded",
    )
    region: str | None = Field(None, max_length=64)

    @field_validator("ssh_key")
    @classmethod
    def _key(cls, value: str) -> str:
        parts = value.strip().split()
        if len(parts) < 2 or parts[0] not in KEY_TYPES:
            raise ValueError(f"must be an OpenSSH public key line starting with one of {', '.join(KEY_TYPES[:3])}")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise ValueError("the key's base64 part does not decode") from None
        if not blob.startswith(len(parts[0]).to_bytes(4, "big") + parts[0].encode()):
            raise ValueError("the key's blob does not match its type")
        if "\n" in value.strip() or "\r" in value:
            raise ValueError("must be a single line")
        return " ".join(parts)

    @field_validator("cmdline")
    @classmethod
    def _cmdline(cls, value: str) -> str:
        if re.search(r"[\x00-\x1f]", value):
            raise ValueError("must not hold control characters")
        return value

    @model_validator(mode="after")
    def _boot(self) -> VmCreate:
        if self.image is None and self.kernel is None:
            raise ValueError("give an image (disk) or a kernel to boot")
        if self.initrd is not None and self.kernel is None:
            raise ValueError("an initrd needs a kernel")
        return self


class StartIn(BaseModel):
    snapshot: str | None = Field(
        None,
        pattern=SNAPSHOT_NAME,
        description="Restore this snapshot first: one taken "
        "while running resumes where it was; one taken while stopped boots its disk",
    )


class SnapshotIn(BaseModel):
    name: str = Field(..., pattern=SNAPSHOT_NAME, description="Letters, digits, '_' and '-', up to 40")


class SnapshotOut(BaseModel):
    name: str
    created_at: datetime
    memory: bool = Field(description="True: memory and device state too (taken while running)")


class VmOut(BaseModel):
    id: str
    name: str
    owner: str
    status: Status
    vcpus: int
    memory_mb: int
    disk_mb: int
    image: str | None
    kernel: str | None
    initrd: str | None
    accel: str = Field(description="kvm, or tcg (software emulation)")
    lease_id: str
    provider: str
    price_gwei: int = Field(description="The lease's ask per compute-unit-second")
    compute_units: int
    billed_s: int = Field(description="Running seconds billed so far")
    paid_gwei: int = Field(description="What the lease has charged so far")
    lease_status: str
    running_since: datetime | None
    ends_at: datetime = Field(description="When the machine's time is up: it is stopped, billed and its lease ended")
    ssh_host: str = Field(description="Where the machine's SSH port is forwarded")
    ssh_port: int | None = Field(
        description="Host port forwarded to the guest's port 22 while it runs (the guest has no other network)"
    )
    snapshots: list[SnapshotOut]
    error: str | None
    created_at: datetime
    updated_at: datetime
