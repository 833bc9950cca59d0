"""Memory test fixtures: the tiny local LLM, services bound to it, and fresh owners per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from fixtures.tiny_llm import build_tiny_causal_lm

import agxnt.context
from agxnt.context import AgentContext, Services
from cxmpute.settings import Settings, reset_settings


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm")))


@pytest.fixture(scope="module")
def platform(tiny_llm) -> Iterator[Services]:
    """The process's default services, configured as a deployment would be: through the environment.
    Module-scoped, so the environment is restored before other packages' tests run."""
    saved = os.environ.get("CXMPUTE_LLM_MODEL")
    os.environ["CXMPUTE_LLM_MODEL"] = tiny_llm
    reset_settings()
    agxnt.context._default_services = None
    yield agxnt.context.default_services()
    if saved is None:
        os.environ.pop("CXMPUTE_LLM_MODEL", None)
    else:
        os.environ["CXMPUTE_LLM_MODEL"] = saved
    reset_settings()
    agxnt.context._default_services = None


@pytest.fixture
def owners() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"0xA11CE{tag}", f"0xB0B{tag}"


@pytest.fixture
def ctx_for(platform) -> Callable[[str], AgentContext]:
    return lambda owner: AgentContext(owner=owner, settings=platform.settings, services=platform)


@pytest.fixture
def settings(platform) -> Settings:
    return platform.settings
