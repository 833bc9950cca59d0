"""Browser actions: the typed steps Browser Use performs, given by the caller or chosen by the model."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page as BrowserPage
from pydantic import BaseModel, Field, TypeAdapter, model_validator

from agxnt.web.egress import EgressPolicy

SELECTOR = 'A Playwright selector: CSS (`#id`, `form button`), `text=Sign in`, or `[data-cx-id="4"]`'

_TABLE_JS = """el => {
  const table = el.tagName === 'TABLE' ? el : el.querySelector('table');
  if (!table) return null;
  const rows = Array.from(table.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim()));
  const hasHead = table.rows.length > 0 && Array.from(table.rows[0].cells).every(c => c.tagName === 'TH');
  return {headers: hasHead ? rows[0] : [], rows: hasHead ? rows.slice(1) : rows};
}"""


class Goto(BaseModel):
    type: Literal["goto"] = "goto"
    url: str = Field(..., max_length=4000)


class Click(BaseModel):
    type: Literal["click"] = "click"
    selector: str = Field(..., description=SELECTOR)


class TypeText(BaseModel):
    type: Literal["type"] = "type"
    selector: str = Field(..., description=SELECTOR)
    text: str = Field(..., max_length=10_000)
    submit: bool = Field(False, description="Press Enter afterwards")


class Select(BaseModel):
    type: Literal["select"] = "select"
    selector: str = Field(..., description=SELECTOR)
    value: str = Field(..., description="Option value or visible label")


class Scroll(BaseModel):
    type: Literal["scroll"] = "scroll"
    pixels: int = Field(600, ge=-100_000, le=100_000, description="Down when positive")
    selector: str | None = Field(None, description="Scroll this element into view instead")


class WaitFor(BaseModel):
    type: Literal["wait_for"] = "wait_for"
    selector: str | None = Field(None, description=SELECTOR)
    text: str | None = Field(None, description="Visible text to wait for")
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _needs_target(self) -> WaitFor:
        if not self.selector and not self.text:
            raise ValueError("wait_for needs a selector or a text")
        return self


class ExtractText(BaseModel):
    type: Literal["extract_text"] = "extract_text"
    selector: str = Field("body", description=SELECTOR)


class ExtractTable(BaseModel):
    type: Literal["extract_table"] = "extract_table"
    selector: str = Field("table", description="The table, or an element containing it")


class Screenshot(BaseModel):
    type: Literal["screenshot"] = "screenshot"
    full_page: bool = False


class Done(BaseModel):
    """Ends the run; the model gives its answer here."""

    type: Literal["done"] = "done"
    answer: str = ""


Action = Annotated[
    Goto | Click | TypeText | Select | Scroll | WaitFor | ExtractText | ExtractTable | Screenshot | Done,
    Field(discriminator="type"),
]
action_adapter: TypeAdapter[Any] = TypeAdapter(Action)


async def screenshot(page: BrowserPage, full_page: bool = False) -> str:
    """A JPEG of the page as a data URL, small enough to travel in a step log."""
    data = await page.screenshot(type="jpeg", quality=60, full_page=full_page)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


async def perform(
    page: BrowserPage, action: BaseModel, policy: EgressPolicy, *, url_field: str, timeout_ms: float
) -> Any:
    """Do one action on the page; returns what it extracted (text, table, image) or None.

    ``url_field`` names the input field a goto's URL came from, for the egress refusal."""
    match action:
        case Goto(url=url):
            await policy.check(url, field=url_field)
            response = await page.goto(url, wait_until="load", timeout=timeout_ms)
            if response is not None and response.status >= 400:
                raise PlaywrightError(f"{url} answered HTTP {response.status}")
        case Click(selector=selector):
            await page.locator(selector).first.click(timeout=timeout_ms)
            await page.wait_for_load_state("load", timeout=timeout_ms)
        case TypeText(selector=selector, text=text, submit=submit):
            target = page.locator(selector).first
            await target.fill(text, timeout=timeout_ms)
            if submit:
                await target.press("Enter", timeout=timeout_ms)
                await page.wait_for_load_state("load", timeout=timeout_ms)
        case Select(selector=selector, value=value):
            await page.locator(selector).first.select_option(value, timeout=timeout_ms)
        case Scroll(selector=str() as selector):
            await page.locator(selector).first.scroll_into_view_if_needed(timeout=timeout_ms)
        case Scroll(pixels=pixels):
            await page.evaluate("px => window.scrollBy(0, px)", pixels)
        case WaitFor(selector=selector, text=text, timeout_seconds=seconds):
            if selector:
                await page.locator(selector).first.wait_for(state="visible", timeout=seconds * 1000)
            if text:
                await page.get_by_text(text).first.wait_for(state="visible", timeout=seconds * 1000)
        case ExtractText(selector=selector):
            return await page.locator(selector).first.inner_text(timeout=timeout_ms)
        case ExtractTable(selector=selector):
            return await page.locator(selector).first.evaluate(_TABLE_JS, timeout=timeout_ms)
        case Screenshot(full_page=full_page):
            return await screenshot(page, full_page)
        case Done(answer=answer):
            return answer
    return None
