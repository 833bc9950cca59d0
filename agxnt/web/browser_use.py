"""Browser Use (`web.browser`): drive a page by a list of actions, or by an instruction the model turns
into actions one step at a time. Every step is logged with a screenshot."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page as BrowserPage
from pydantic import BaseModel, Field, ValidationError

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.actions import (
    Action,
    Done,
    ExtractTable,
    ExtractText,
    Goto,
    Screenshot,
    action_adapter,
    perform,
    screenshot,
)
from agxnt.web.browser import browsers
from agxnt.web.egress import EgressDenied
from agxnt.web.llm_io import ask, first_json
from agxnt.web.session import WebSession

# Marks the elements the model may act on, so it can name them by a stable selector.
_OBSERVE_JS = """() => {
  const items = [];
  const nodes = document.querySelectorAll('a[href], button, input, select, textarea, [role=button], [onclick]');
  let n = 0;
  for (const el of nodes) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    el.setAttribute('data-cx-id', String(n));
    const label = (el.innerText || el.value || el.getAttribute('aria-label') || el.getAttribute('placeholder')
                   || el.getAttribute('name') || '').trim().slice(0, 80);
    const item = {id: n, tag: el.tagName.toLowerCase(), label};
    if (el.type) item.kind = el.type;
    if (el.tagName === 'A') item.href = el.getAttribute('href');
    if (el.tagName === 'SELECT') item.options = Array.from(el.options).map(o => o.label).slice(0, 20);
    items.push(item);
    if (++n >= 60) break;
  }
  return items;
}"""

SYSTEM_PROMPT = """You operate a web browser to carry out the user's instruction, one action per reply.
Reply with exactly one JSON object and nothing else. Actions:
{"type": "goto", "url": "..."}
{"type": "click", "selector": "[data-cx-id=\\"3\\"]"}
{"type": "type", "selector": "...", "text": "...", "submit": false}
{"type": "select", "selector": "...", "value": "option label or value"}
{"type": "scroll", "pixels": 600}
{"type": "wait_for", "selector": "...", "text": null}
{"type": "extract_text", "selector": "body"}
{"type": "extract_table", "selector": "table"}
{"type": "screenshot"}
{"type": "done", "answer": "the answer to the instruction"}
Elements on the page are listed with ids; select them with [data-cx-id="<id>"].
When the instruction is fulfilled, reply with done and the answer."""


class Step(BaseModel):
    index: int
    action: dict[str, Any]
    ok: bool
    error: str | None = None
    result: Any = Field(None, description="What the step extracted, if anything")
    url: str = ""
    title: str = ""
    screenshot: str | None = Field(None, description="JPEG data URL of the page after the step")


class BrowserUseAgent(Agent):
    """Drive a real browser: goto, click, type, select, scroll, wait, extract text or tables, screenshot."""

    id = "web.browser"
    name = "Browser Use"
    family = "Web"
    resources = Resources(network=True, browser=True, cpu=1.0, memory_mb=1024)

    class Input(BaseModel):
        start_url: str | None = Field(None, max_length=4000, description="Page to open first")
        actions: list[Action] = Field(default_factory=list, max_length=100, description="Steps to perform in order")
        instruction: str | None = Field(
            None, max_length=4000, description="What to do, in words; the model picks the actions"
        )
        max_steps: int = Field(15, ge=1, le=50, description="Model-chosen steps at most")
        screenshots: bool = Field(True, description="Attach a screenshot to every step")
        stop_on_error: bool = Field(True, description="Stop at the first failed step")

    class Output(BaseModel):
        ok: bool = Field(..., description="Every action succeeded; for an instruction, the model finished")
        steps: list[Step] = Field(default_factory=list)
        extracted: list[Any] = Field(default_factory=list, description="Results of the extract steps, in order")
        answer: str | None = Field(None, description="The model's answer, for an instruction")
        final_url: str = ""
        title: str = ""

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if bool(input.actions) == bool(input.instruction and input.instruction.strip()):
            raise AgentError(
                "give a list of actions or an instruction (one of them)",
                field="instruction" if input.instruction else "actions",
            )
        async with WebSession(ctx) as web:
            if input.start_url:
                await web.policy.check(input.start_url, field="start_url")
            job = await web.browser()
            page = await browsers.call(job.context.new_page())
            driver = Driver(page, web, input, ctx)
            if input.start_url:
                await driver.step(Goto(url=input.start_url), url_field="start_url")
            if input.actions:
                for i, action in enumerate(input.actions):
                    ctx.check_cancelled()
                    if not await driver.step(action, url_field=f"actions.{i}.url") and input.stop_on_error:
                        break
                    ctx.progress((i + 1) / len(input.actions))
            else:
                await driver.follow(input.instruction.strip())
            return driver.output(await browsers.call(page.title()))


class Driver:
    def __init__(self, page: BrowserPage, web: WebSession, input: BrowserUseAgent.Input, ctx: AgentContext):
        self.page, self.web, self.input, self.ctx = page, web, input, ctx
        self.steps: list[Step] = []
        self.extracted: list[Any] = []
        self.answer: str | None = None
        self.finished = False

    async def step(self, action: BaseModel, *, url_field: str) -> bool:
        """Perform and log one action; an egress refusal ends the run as a refusal, anything else is logged."""
        record = await browsers.call(self._on_page(action, url_field))
        if isinstance(action, (ExtractText, ExtractTable)) and record.ok:
            self.extracted.append(record.result)
        if isinstance(action, Done):
            self.answer, self.finished = record.result, True
        self.steps.append(record)
        return record.ok

    async def _on_page(self, action: BaseModel, url_field: str) -> Step:
        """On the browser's loop: the action itself, then where it left the page and a screenshot."""
        record = Step(index=len(self.steps), action=action.model_dump(), ok=True)
        try:
            record.result = await perform(
                self.page, action, self.web.policy, url_field=url_field, timeout_ms=self.web.timeout * 1000
            )
        except PlaywrightError as exc:
            if refused := self.web.refusal(self.page.url, exc):
                raise EgressDenied(refused, field=url_field) from None
            record.ok, record.error = False, exc.message.splitlines()[0]
        if refused := self.web.refusal(self.page.url):
            raise EgressDenied(refused, field=url_field)
        record.url = self.page.url
        record.title = await self.page.title()
        if isinstance(action, Screenshot):
            record.screenshot, record.result = record.result, None
        elif self.input.screenshots:
            record.screenshot = await screenshot(self.page)
        return record

    async def follow(self, instruction: str) -> None:
        """Ask the model for one action at a time until it says done or the step budget runs out."""
        for i in self.ctx.iterate(self.input.max_steps):
            reply = await ask(self.ctx, SYSTEM_PROMPT, await self.observe(instruction), field="instruction")
            try:
                action = action_adapter.validate_python(first_json(reply))
            except ValidationError as exc:
                problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
                self.steps.append(
                    Step(
                        index=len(self.steps),
                        action={"reply": reply[:500]},
                        ok=False,
                        error=f"not a valid action: {problem}",
                        url=self.page.url,
                    )
                )
                continue
            await self.step(action, url_field="instruction")
            self.ctx.progress((i + 1) / self.input.max_steps)
            if self.finished:
                return

    async def observe(self, instruction: str) -> str:
        elements, text, url, title = await browsers.call(self._snapshot())
        history = [
            {
                "action": s.action,
                "ok": s.ok,
                **({"error": s.error} if s.error else {}),
                **({"result": str(s.result)[:500]} if s.result is not None else {}),
            }
            for s in self.steps[-8:]
        ]
        return (
            f"Instruction: {instruction}\n\nCurrent URL: {url}\nTitle: {title}\n\n"
            f"Elements:\n{json.dumps(elements)}\n\nPage text:\n{text}\n\n"
            f"Steps so far:\n{json.dumps(history, default=str)}\n\nYour next action (one JSON object):"
        )

    async def _snapshot(self) -> tuple[list[dict[str, Any]], str, str, str]:
        """On the browser's loop: the page's actionable elements (tagged with ids), text, URL and title."""
        if self.page.url == "about:blank":
            return [], "", self.page.url, ""
        elements = await self.page.evaluate(_OBSERVE_JS)
        text = (await self.page.inner_text("body"))[:3000]
        return elements, text, self.page.url, await self.page.title()

    def output(self, title: str) -> BrowserUseAgent.Output:
        # with an instruction the model may recover from a failed step, so finishing is what counts
        ok = self.finished if self.input.instruction else all(s.ok for s in self.steps)
        return BrowserUseAgent.Output(
            ok=ok, steps=self.steps, extracted=self.extracted, answer=self.answer, final_url=self.page.url, title=title
        )
