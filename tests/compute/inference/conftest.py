"""Tiny models built from configs once per session, loaded through the same path as real model ids."""

from __future__ import annotations

import pytest
from fixtures.tiny_embedder import build_tiny_embedder
from fixtures.tiny_llm import build_tiny_causal_lm

from tests.support.tool_chat_model import build_tiny_tool_lm


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    import torch

    torch.manual_seed(0)  # fixed weights: texts the tests cut at stop strings come out the same every run
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-lm", context=2048)


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory):
    return build_tiny_embedder(tmp_path_factory.mktemp("models") / "tiny-embedder")


@pytest.fixture(scope="session")
def tiny_tool_lm(tmp_path_factory):
    """The tiny LM with a chat template that renders tools and past calls (Hermes/Qwen style)."""
    import torch

    torch.manual_seed(0)
    return build_tiny_tool_lm(tmp_path_factory.mktemp("models") / "tiny-tool-lm")


@pytest.fixture(scope="session")
def structured_server(tiny_lm, tiny_tool_lm):
    """The inference server over real HTTP serving ``tools`` (a template for tools) and ``plain`` (none)."""
    import threading
    import time

    import uvicorn

    from compute.inference import backends
    from compute.inference.server import create_app
    from cxmpute.ports import free_port

    models = [
        backends.load(backends.ModelSpec.parse("text", f"tools={tiny_tool_lm}"), "cpu"),
        backends.load(backends.ModelSpec.parse("text", f"plain={tiny_lm}"), "cpu"),
    ]
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(models), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(10)
