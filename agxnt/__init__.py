"""Agxnt: modular AI agents with typed ports, one registry, and LangChain/Prefect faces."""

from agxnt.agent import Agent, AgentInfo, Resources
from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError, UnknownAgent
from agxnt.registry import registry
from cxmpute.errors import Forbidden, NotFound

__all__ = [
    "Agent",
    "AgentContext",
    "AgentError",
    "AgentInfo",
    "Forbidden",
    "NotFound",
    "Resources",
    "Services",
    "UnknownAgent",
    "registry",
]
