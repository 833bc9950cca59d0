"""A provider's inference server in this process, over real HTTP, serving the tiny tool-calling LM: what an
agent's chat model reaches when it calls tools, without a provider process or the market in between."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.tool_chat_model import build_tiny_tool_lm


@contextmanager
def tool_inference_server(models_dir: Path, name: str = "tools") -> Iterator[str]:
    """The server's ``/v1`` URL, serving a tiny random-weight LM whose template renders tools as ``name``."""
    import torch
    import uvicorn

    from compute.inference import backends
    from compute.inference.server import create_app
    from cxmpute.ports import free_port

    torch.manual_seed(0)  # fixed weights: a run's unforced choices come out the same every time
    path = build_tiny_tool_lm(models_dir / "tiny-tool-lm")
    models = [backends.load(backends.ModelSpec.parse("text", f"{name}={path}"), "cpu")]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(models), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
