"""Problems of a workflow document or of a run's inputs: each names its node, edge or field, and a document
with any is refused with every one listed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cxmpute.errors import CxmputeError


class Problem(BaseModel):
    """One thing wrong with a document. ``code`` is machine-readable, ``message`` is for people."""

    code: str  # invalid_document | duplicate_node | unknown_agent | unknown_version | unknown_node | unknown_port
    #            | type_mismatch | cycle | missing_input | bad_param | unknown_input | duplicate_edge | unknown_output
    #            | missing_run_input | unknown_run_input | bad_run_input (a run's inputs, see check_inputs)
    message: str
    node: str | None = None
    edge: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"node {self.node!r}" if self.node else (f"edge #{self.edge}" if self.edge is not None else "document")
        return f"{where}: {self.message}"


class WorkflowInvalid(CxmputeError):
    """A document (or a run's inputs) with problems: a 422 listing every one, each naming its node or field."""

    status_code = 422

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p) for p in problems), field=problems[0].field if problems else None)
        self.problems = problems

    def body(self) -> dict[str, Any]:
        return {
            "detail": f"workflow has {len(self.problems)} problem(s): {self}",
            "errors": [p.model_dump() for p in self.problems],
        }
