"""A minimal deployable flow: greets, and says which machine and worker ran it."""

from __future__ import annotations

import os
import socket

from prefect import flow, get_run_logger


@flow(name="cxmpute-hello")
def hello(name: str = "world", times: int = 1) -> dict[str, object]:
    """Greet ``name`` ``times`` times; the result names the host and the worker that ran the flow run."""
    greeting = " ".join([f"hello {name}"] * times)
    # The worker that launched this run passes its name down; a run started in-process has none.
    where = {"host": socket.gethostname(), "worker": os.environ.get("PREFECT__WORKER_NAME")}
    get_run_logger().info("%s (on %s, worker %s)", greeting, where["host"], where["worker"])
    return {"greeting": greeting, **where}
