"""Builder primitives every workflow needs: inputs, templates, outputs, waits, HTTP and approvals."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.templating import render_template
from agxnt.web.egress import EgressDenied


class ValueOutput(BaseModel):
    value: Any = None


class InputAgent(Agent):
    """A workflow input: a text or JSON value given when the run starts."""

    id = "io.input"
    name = "Input"
    family = "Builder"

    class Input(BaseModel):
        name: str = Field("input", description="Name of the workflow input this node reads")
        value: Any = Field(None, description="The value (set from the run's inputs, or a default)")

    Output = ValueOutput

    async def run(self, input: Input, ctx: AgentContext) -> ValueOutput:
        return ValueOutput(value=input.value)


class TemplateAgent(Agent):
    """A prompt template: renders text from named variables (sandboxed Jinja, `{{ name }}`), in a worker
    process under a time, memory and output limit."""

    id = "io.template"
    name = "Prompt Template"
    family = "Builder"

    class Input(BaseModel):
        template: str = Field(..., description="Template text, e.g. 'Summarise: {{ text }}'")
        variables: dict[str, Any] = Field(default_factory=dict, description="Values for the template's names")

    class Output(BaseModel):
        text: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        return self.Output(text=await render_template(input.template, input.variables, ctx.settings))


class OutputAgent(Agent):
    """A workflow output: its value becomes one of the run's named outputs."""

    id = "io.output"
    name = "Output"
    family = "Builder"

    class Input(BaseModel):
        name: str = Field("output", description="Name of the workflow output")
        value: Any = Field(None, description="The value to output")

    Output = ValueOutput

    async def run(self, input: Input, ctx: AgentContext) -> ValueOutput:
        return ValueOutput(value=input.value)


class JsonPathAgent(Agent):
    """Pick a value out of JSON by a dotted path (`items.0.title`)."""

    id = "io.json"
    name = "Pick JSON"
    family = "Builder"

    class Input(BaseModel):
        data: Any = Field(None, description="A JSON value")
        path: str = Field("", description="Dotted path; list indexes are numbers")

    Output = ValueOutput

    async def run(self, input: Input, ctx: AgentContext) -> ValueOutput:
        value = input.data
        for part in [p for p in input.path.split(".") if p]:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                value = value[int(part)]
            else:
                raise AgentError(f"path {input.path!r} not found at {part!r}", field="path")
        return ValueOutput(value=value)


class WaitAgent(Agent):
    """Wait a number of seconds, then pass the value through."""

    id = "util.wait"
    name = "Wait"
    family = "Builder"

    class Input(BaseModel):
        seconds: float = Field(1.0, ge=0, le=3600, description="How long to wait")
        value: Any = Field(None, description="Passed through unchanged")

    class Output(BaseModel):
        value: Any = None
        started_at: datetime
        finished_at: datetime

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        started = datetime.now(UTC)
        remaining = input.seconds
        while remaining > 0:
            ctx.check_cancelled()
            step = min(remaining, 0.25)
            await asyncio.sleep(step)
            remaining -= step
            ctx.progress(1 - remaining / input.seconds if input.seconds else 1.0)
        return self.Output(value=input.value, started_at=started, finished_at=datetime.now(UTC))


class HttpRequestAgent(Agent):
    """Call an HTTP endpoint. Server errors fail the node so its retries apply."""

    id = "http.request"
    name = "HTTP Request"
    family = "Builder"
    resources = Resources(network=True)

    class Input(BaseModel):
        url: str = Field(..., description="Absolute http(s) URL")
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
        headers: dict[str, str] = Field(default_factory=dict)
        params: dict[str, str] = Field(default_factory=dict)
        json_body: Any = Field(None, description="JSON request body")
        timeout: float = Field(30.0, gt=0, le=600)
        fail_on_error: bool = Field(True, description="Fail the node on a 4xx/5xx answer")

    class Output(BaseModel):
        status: int
        headers: dict[str, str]
        text: str
        json_body: Any = None

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        ctx.services.egress.check_scheme(input.url, field="url")
        limit = ctx.settings.web_max_page_bytes
        async with ctx.services.http(timeout=input.timeout) as client:
            try:
                async with client.stream(
                    # an empty params would replace the URL's own query string rather than add nothing
                    input.method,
                    input.url,
                    headers=input.headers,
                    params=input.params or None,
                    json=input.json_body if input.json_body is not None else None,
                ) as resp:
                    content = bytearray()
                    async for chunk in resp.aiter_bytes():
                        content += chunk
                        if len(content) > limit:
                            raise AgentError(
                                f"{input.url} answered more than {limit} bytes", field="url", status_code=502
                            )
            except EgressDenied as exc:
                raise EgressDenied(exc.message, field="url") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise AgentError(f"request to {input.url} failed: {exc}", field="url") from None
        text = bytes(content).decode(resp.encoding or "utf-8", errors="replace")
        if input.fail_on_error and resp.status_code >= 400:
            raise AgentError(
                f"{input.method} {input.url} answered {resp.status_code}: {text[:200]}",
                field="url",
                status_code=502 if resp.status_code >= 500 else 400,
            )
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return self.Output(status=resp.status_code, headers=dict(resp.headers), text=text, json_body=body)


class ApprovalResponse(BaseModel):
    approved: bool = Field(..., description="Approve (true) or reject (false)")
    value: Any = Field(None, description="Replacement value; the incoming value is kept when empty")
    comment: str = ""


class ApproveAgent(Agent):
    """Human in the loop: pause the run until someone approves (optionally editing the value) or rejects."""

    id = "hitl.approve"
    name = "Approve"
    family = "Builder"

    class Input(BaseModel):
        prompt: str = Field("Approve to continue", description="What the person is asked")
        value: Any = Field(None, description="The value under review")
        timeout_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600, description="How long to wait for an answer")
        response: ApprovalResponse | None = Field(None, description="Filled in by the run when answered")

    class Output(BaseModel):
        approved: bool
        value: Any = None
        comment: str = ""

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if input.response is None:
            raise AgentError(
                "hitl.approve needs an answer: it runs inside a workflow, which pauses for it", field="response"
            )
        if not input.response.approved:
            raise AgentError(
                f"rejected: {input.response.comment or 'no reason given'}", field="response", status_code=409
            )
        value = input.response.value if input.response.value is not None else input.value
        return self.Output(approved=True, value=value, comment=input.response.comment)
