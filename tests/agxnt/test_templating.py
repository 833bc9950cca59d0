"""Prompt templates render in worker processes: a runaway template is stopped, an oversized one refused,
and the caller's event loop keeps running meanwhile."""

from __future__ import annotations

import asyncio
import os
import pwd
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agxnt.builtins import TemplateAgent
from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.templating import render_template
from cxmpute.settings import Settings

BOMB = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def settings(**overrides: object) -> Settings:
    return Settings(**{"template_timeout_s": 1.0, **overrides})


async def _fails(template: str, config: Settings, variables: dict | None = None) -> AgentError:
    with pytest.raises(AgentError) as err:
        await render_template(template, variables or {}, config)
    return err.value


async def test_renders_like_jinja() -> None:
    text = await render_template(
        "{{ who }} has {{ items | length }} items: {{ items | join(', ') }}",
        {"who": "Ada", "items": ["a", "b"]},
        settings(),
    )
    assert text == "Ada has 2 items: a, b"
    when = datetime(2024, 5, 1, tzinfo=UTC)
    assert await render_template("{{ when }}", {"when": when}, settings()) == "2024-05-01T00:00:00Z"


async def test_the_event_loop_runs_while_a_template_burns() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    err = await _fails(BOMB, settings())
    ticker.cancel()
    assert ticks > 1
    assert err.status_code == 422 and err.field == "template"
    assert "longer than 1 s" in err.message
    assert await render_template("still {{ 'fine' }}", {}, settings()) == "still fine"  # a fresh worker


async def test_runaway_shapes_are_all_stopped() -> None:
    for template in [
        BOMB,
        "{{ lipsum(n=1000000) }}",
        "{% for x in range(100000) %}{% for y in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    ]:
        err = await _fails(template, settings())
        assert err.status_code == 422 and err.field == "template", (template, err.message)


async def test_output_is_capped_while_it_is_generated() -> None:
    config = settings(template_max_output_chars=10)
    assert await render_template("{{ 'x' * 10 }}", {}, config) == "x" * 10
    for template in [
        "{{ 'x' * 11 }}",
        "{% for i in range(100000) %}y{% endfor %}",
        "{{ 'w' | center(20) }}",
        "{{ '%20d' % 1 }}",
        "{{ '{:>20}'.format(1) }}",
    ]:
        err = await _fails(template, config)
        assert err.status_code == 422 and err.field == "template"
        assert "longer than 10 characters" in err.message


async def test_memory_is_capped() -> None:
    err = await _fails("{{ 'x' * 1000000000 }}", settings(template_max_output_chars=2_000_000_000))
    assert err.status_code == 422 and err.field == "template"
    assert "more than 256 MB" in err.message


async def test_template_mistakes_name_their_field() -> None:
    assert (await _fails("{{ missing }}", settings())).field == "variables"
    for template in ["{% if %}", "{{ 1/0 }}", "{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}"]:
        err = await _fails(template, settings())
        assert err.field == "template" and err.status_code == 400, (template, err.message)


async def test_the_agent_renders_through_the_worker() -> None:
    config = settings(template_max_output_chars=5)
    ctx = AgentContext(settings=config, services=Services(config))
    assert (await TemplateAgent()({"template": "{{ a }}", "variables": {"a": "hi"}}, ctx)).text == "hi"
    with pytest.raises(AgentError) as err:
        await TemplateAgent()({"template": "{{ a }}", "variables": {"a": "too long"}}, ctx)
    assert err.value.field == "template"


def _template_workers() -> list[int]:
    me = str(os.getpid())
    workers = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), None)
        if parent == me and any(a.endswith(b"template_worker.py") for a in argv):
            workers.append(int(entry.name))
    return workers


async def test_workers_hold_no_privilege_and_no_environment() -> None:
    assert os.environ.get("CXMPUTE_HOME")  # the test process has one (tests/conftest.py)
    assert await render_template("{{ 1 + 1 }}", {}, settings()) == "2"
    workers = _template_workers()
    assert workers
    for pid in workers:
        assert Path(f"/proc/{pid}/environ").read_bytes().strip(b"\0") == b""
        uids = next(
            line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        )
        if os.geteuid() == 0:
            assert set(uids) == {str(pwd.getpwnam(settings().untrusted_user).pw_uid)}, uids
