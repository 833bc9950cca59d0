"""Talking to the platform's chat model from the web agents: one prompt in, text or JSON out."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from agxnt.context import AgentContext
from agxnt.errors import AgentError


class ModelUnavailable(AgentError):
    status_code = 502


async def ask(ctx: AgentContext, system: str, user: str, *, field: str) -> str:
    """The model's reply as text; a model that cannot be reached fails with the input field it served."""
    try:
        reply = await ctx.services.llm.ainvoke([SystemMessage(content=system), HumanMessage(content=user)])
    except AgentError:
        raise
    except Exception as exc:  # the model client raises its own transport and API error types
        raise ModelUnavailable(f"the language model failed: {type(exc).__name__}: {exc}", field=field) from None
    content = reply.content
    if isinstance(content, list):
        content = "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return str(content).strip()


def first_json(text: str) -> Any:
    """The first JSON value in a reply, tolerating code fences and prose around it; None when there is none."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            return value
    return None
