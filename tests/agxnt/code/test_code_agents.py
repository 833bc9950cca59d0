"""Codexecution and Sequential Code as agents: files through storage, errors, sessions, the three faces."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from agxnt.adapters import as_langchain_tool, as_prefect_task
from agxnt.code.agents import Codexecution, SequentialCode
from agxnt.context import AgentContext, default_services
from agxnt.errors import AgentError
from agxnt.registry import registry
from compute.runtimes import runtime_registry
from cxmpute.settings import get_settings

RUNTIMES = ["sandbox", pytest.param("container", marks=[pytest.mark.docker, pytest.mark.slow])]


@pytest.fixture(params=RUNTIMES)
def runtime_name(request):
    why = runtime_registry(get_settings()).runtime(request.param).check()
    if why is not None:
        pytest.skip(f"no {request.param} runtime on this machine: {why}")
    return request.param


def ctx(owner: str = "alice") -> AgentContext:
    return AgentContext(owner=owner)


def test_registered_in_the_catalogue():
    assert registry.get("code.exec") is Codexecution and registry.get("code.sequential") is SequentialCode
    info = Codexecution.info()
    assert info.family == "Code" and info.resources.runtime == "sandbox"
    assert "code" in info.input_schema["properties"] and "files" in info.output_schema["properties"]


async def test_codexecution_returns_output_result_files_and_usage(runtime_name):
    storage = default_services().storage
    given = storage.put_bytes(b"3,4\n", owner="alice", name="numbers.csv").file.cid
    out = await Codexecution()(
        {
            "runtime": runtime_name,
            "code": "a, b = map(int, open('data/numbers.csv').read().split(','))\n"
            "open('report/sum.txt', 'w').write(str(a + b + inputs['bonus']))\n"
            "print('summed')\n"
            "{'sum': a + b + inputs['bonus'], 'greeting': open('hello.txt').read()}",
            "inputs": {"bonus": 10},
            "files": [
                {"path": "data/numbers.csv", "cid": given},
                {"path": "hello.txt", "text": "hi"},
                {"path": "report/.keep", "content_base64": base64.b64encode(b"").decode()},
            ],
        },
        ctx(),
    )
    assert out.status == "ok" and out.exit_code == 0 and out.stdout == "summed\n"
    assert out.result == {"sum": 17, "greeting": "hi"} and out.runtime == runtime_name
    assert [f.path for f in out.files] == ["report/sum.txt"], "unchanged input files are not returned"
    assert storage.get_bytes(out.files[0].cid, owner="alice") == b"17"
    assert out.usage.cpu_seconds > 0


async def test_codexecution_reports_bad_code_without_failing(runtime_name):
    agent = Codexecution()
    syntax = await agent({"runtime": runtime_name, "code": "print(("}, ctx())
    assert syntax.status == "error" and "SyntaxError" in syntax.error
    not_json = await agent({"runtime": runtime_name, "code": "{1, 2}"}, ctx())
    assert not_json.status == "error" and "not JSON" in not_json.error
    timeout = await agent({"runtime": runtime_name, "code": "while True: pass", "timeout_seconds": 1.5}, ctx())
    assert timeout.status == "timeout"
    shell = await agent({"runtime": runtime_name, "language": "shell", "code": "echo hi; exit 2"}, ctx())
    assert shell.status == "error" and shell.exit_code == 2 and shell.stdout == "hi\n"


async def test_fail_on_error_fails_the_node():
    with pytest.raises(AgentError) as err:
        await Codexecution()({"code": "1/0", "fail_on_error": True}, ctx())
    assert err.value.status_code == 422 and err.value.field == "code" and "ZeroDivisionError" in err.value.message


async def test_bad_input_names_the_field():
    agent = Codexecution()
    with pytest.raises(AgentError) as err:
        await agent({"code": "1", "runtime": "vm9000"}, ctx())
    assert err.value.field == "runtime" and err.value.status_code == 400
    with pytest.raises(AgentError) as err:
        await agent({"code": "1", "files": [{"path": "x", "content_base64": "not base64!"}]}, ctx())
    assert err.value.field == "files"
    with pytest.raises(AgentError) as err:
        await agent({"code": "1", "files": [{"path": "../escape", "text": "x"}]}, ctx())
    assert err.value.field == "path" and err.value.status_code == 400
    for bad in (
        {"code": ""},
        {"code": "1", "timeout_seconds": 0},
        {"code": "1", "memory_mb": 10**6},
        {"code": "1", "files": [{"path": "x", "text": "a", "cid": "b"}]},
    ):
        with pytest.raises(ValidationError):
            await agent(bad, ctx())


async def test_sequential_code_session_across_calls(runtime_name):
    agent = SequentialCode()
    first = await agent(
        {
            "runtime": runtime_name,
            "keep_open": True,
            "cells": ["import json\nstate = {'n': 1}", "state['n'] += 1\nstate"],
        },
        ctx(),
    )
    assert first.open and [c.status for c in first.cells] == ["ok", "ok"] and first.cells[1].result == {"n": 2}
    with pytest.raises(AgentError) as err:
        await agent({"session_id": first.session_id, "cells": ["state"]}, ctx("mallory"))
    assert err.value.status_code == 403 and err.value.field == "session_id"
    second = await agent(
        {"session_id": first.session_id, "cells": ["state['n'] * 10", "print(json.dumps(state))"]}, ctx()
    )
    assert second.open and second.cells[0].result == 20 and second.cells[1].stdout == '{"n": 2}\n'
    closed = await agent({"session_id": first.session_id, "close": True}, ctx())
    assert not closed.open and closed.cells == []
    with pytest.raises(AgentError) as err:
        await agent({"session_id": first.session_id, "cells": ["state"]}, ctx())
    assert err.value.status_code == 404


async def test_sequential_code_stops_after_a_failed_cell():
    out = await SequentialCode()({"cells": ["x = 1", "x / 0", "x + 1"]}, ctx())
    assert [c.status for c in out.cells] == ["ok", "error", "skipped"] and not out.open
    assert "ZeroDivisionError" in out.cells[1].error
    carry_on = await SequentialCode()({"cells": ["x = 1", "x / 0", "x + 1"], "stop_on_error": False}, ctx())
    assert [c.status for c in carry_on.cells] == ["ok", "error", "ok"] and carry_on.cells[2].result == 2
    assert runtime_registry(get_settings()).sessions.list("alice") == []


async def test_sequential_code_needs_cells():
    with pytest.raises(ValidationError):
        await SequentialCode()({"cells": []}, ctx())


async def test_langchain_tool_and_prefect_task_faces():
    tool = as_langchain_tool(Codexecution, ctx())
    answer = await tool.ainvoke({"code": "6 * 7"})
    assert answer["result"] == 42 and answer["status"] == "ok"
    task = as_prefect_task(SequentialCode)
    out = await task.fn({"cells": ["a = 2", "a ** 5"]}, owner="alice")
    assert out["cells"][1]["result"] == 32
