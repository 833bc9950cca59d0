"""How a workflow run, or one of its nodes, ends without a result: a node's agent failed, the run failed or was
cancelled, or the run was lost to another executor."""

from __future__ import annotations

from prefect.exceptions import Abort


class NodeFailed(Exception):
    """A node's agent raised; the message names the node. Args stay picklable for persisted states."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message, retryable)
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class WorkflowFailed(Exception):
    pass


class WorkflowCancelled(Exception):
    pass


class RunLost(Abort):
    """This process no longer holds the run: its claim lapsed while it was alive (a stall longer than the claim's
    TTL) and another executor carries the run on. Raised to leave Prefect's engine without recording any state,
    which it does for an abort, so the executor that now holds the run is not disturbed."""
