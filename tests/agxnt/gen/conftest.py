"""Generation test fixtures: a tiny diffusion pipeline and a tiny LLM, configured through the environment
as a deployment would be, and contexts for fresh owners."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from fixtures.tiny_diffusion import build_tiny_pipeline
from fixtures.tiny_llm import build_tiny_causal_lm

import agxnt.context
from agxnt.context import AgentContext, Services
from cxmpute.settings import reset_settings


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> str:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-diffusion"))


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm")))


@pytest.fixture(scope="module")
def platform(tiny_pipeline, tiny_llm) -> Iterator[Services]:
    """The process's default services with both models set in the environment; restored after the module."""
    env = {"CXMPUTE_IMAGE_MODEL": tiny_pipeline, "CXMPUTE_LLM_MODEL": tiny_llm}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    agxnt.context._default_services = None
    yield agxnt.context.default_services()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    agxnt.context._default_services = None


@pytest.fixture
def owner() -> str:
    return f"0xGE{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ctx(platform, owner) -> AgentContext:
    return AgentContext(owner=owner, settings=platform.settings, services=platform)


@pytest.fixture
def read(platform) -> Callable[[dict | object, str], bytes]:
    """The bytes of a generated file reference, read back from the owner's storage."""

    def read(ref, owner: str) -> bytes:
        cid = ref["cid"] if isinstance(ref, dict) else ref.cid
        return platform.storage.get_bytes(cid, owner=owner)

    return read
