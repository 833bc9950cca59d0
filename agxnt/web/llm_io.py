"""Talking to the platform's chat model from the web agents: one prompt in, text or JSON out."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from agxnt.context import AgentContext
from agxnt.llm import complete


async def ask(ctx: AgentContext, system: str, user: str, *, field: str) -> str:
    """The model's reply as text; a model that cannot be reached fails with the input field it served."""
    return await complete(ctx, [SystemMessage(content=system), HumanMessage(content=user)], field=field)


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
