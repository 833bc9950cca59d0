"""The name of the Prefect task runs that carried jobs to provider workers before jobs were pushed over the
platform's own stream (:mod:`compute.worker.delivery`). Run views of that time still hold such task runs
beside their nodes' own, and leave them out by this name."""

from __future__ import annotations

TASK_NAME = "cxmpute-job"
