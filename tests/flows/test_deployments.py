"""`cxmpute deploy` and `cxmpute deployments` as an operator runs them: separate processes, a real Prefect server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from typer.testing import CliRunner

from flows.deploy import apply
from flows.deploy_cli import app as deploy_app
from flows.deploy_cli import deployments_app
from flows.prefect_file import DeployFileInvalid, plan
from flows.server import auth_string, client_env
from tests.support.prefect import basic

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "deploy" / "prefect.yaml"
CLI = [sys.executable, "-m", "cxmpute.cli"]


def cli(*args: str, api: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}
    if api:
        env.update(client_env(api))
    else:
        env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )


def declared() -> list[dict]:
    return yaml.safe_load(PREFECT_FILE.read_text())["deployments"]


def invoke(app, *args: str):
    """The same commands in this process (already pointed at the test server): a process each would be slow.
    Through the root command, which turns a refusal into one line and its exit status."""
    from cxmpute.cli import app as root

    command = ["deploy"] if app is deploy_app else ["deployments"]
    return CliRunner().invoke(root, [*command, *args], catch_exceptions=False)


def by_name() -> dict[str, object]:
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}


def automations_of(deployment_id) -> list:
    with get_client(sync_client=True) as client:
        return [
            a
            for a in client.read_automations()
            if any(getattr(action, "deployment_id", None) == deployment_id for action in a.actions)
        ]


def runs_of(deployment_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


@pytest.fixture(scope="module")
def deployed(prefect_api):
    """The repository's deploy/prefect.yaml, deployed once by `cxmpute deploy --all` (default --prefect-file)."""
    result = cli("deploy", "--all", api=prefect_api)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_deploy_creates_every_deployment_of_the_file_and_prefect_lists_them(deployed, prefect_api):
    expected = {
        "cxmpute-hello/hello-hourly",
        "cxmpute-hello/hello-on-event",
        "cxmpute-template/diamond-nightly",
        "cxmpute-template/web-research-weekly",
    }
    assert len(expected) == len(declared())
    for name in expected:
        assert name in deployed.stdout
    assert deployed.stdout.count("created") == len(expected)
    found = by_name()
    assert expected <= set(found)

    listed = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "ls"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **client_env(prefect_api), "COLUMNS": "250"},
    )
    assert listed.returncode == 0, listed.stderr
    for name in expected:
        assert name in listed.stdout
        assert str(found[name].id) in listed.stdout

    hourly, nightly = found["cxmpute-hello/hello-hourly"], found["cxmpute-template/diamond-nightly"]
    assert [s.schedule.interval for s in hourly.schedules] == [timedelta(hours=1)]
    assert hourly.schedules[0].parameters == {"times": 2}
    assert hourly.parameters == {"name": "network", "times": 1}
    assert [s.schedule.cron for s in nightly.schedules] == ["0 3 * * *"]
    assert nightly.parameters["template"] == "diamond.yaml"
    assert nightly.entrypoint == "flows.template_runs.run_template"
    assert found["cxmpute-template/web-research-weekly"].paused
    assert {found[n].work_pool_name for n in expected} == {"cxmpute-network"}
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("cxmpute-network").type == "cxmpute"
    assert len(automations_of(found["cxmpute-hello/hello-on-event"].id)) == 1


def test_deploying_again_updates_rather_than_duplicates(deployed, prefect_api):
    before = by_name()
    again = invoke(deploy_app, "--prefect-file", str(PREFECT_FILE), "--all")
    assert again.exit_code == 0, again.output
    assert "created" not in again.stdout
    after = by_name()
    assert {n: d.id for n, d in after.items()} == {n: d.id for n, d in before.items()}
    assert all(len(after[n].schedules) == len(before[n].schedules) for n in before)
    assert len(automations_of(after["cxmpute-hello/hello-on-event"].id)) == 1


def test_ls_shows_schedule_paused_state_and_work_pool(deployed, prefect_api):
    result = invoke(deployments_app, "ls", "--json")
    assert result.exit_code == 0, result.output
    rows = {f"{r['flow']}/{r['name']}": r for r in json.loads(result.stdout)}
    assert rows["cxmpute-hello/hello-hourly"]["schedules"] == ["every 1:00:00"]
    assert rows["cxmpute-template/diamond-nightly"]["schedules"] == ["cron 0 3 * * *"]
    assert rows["cxmpute-template/web-research-weekly"]["paused"] is True
    assert rows["cxmpute-hello/hello-hourly"]["paused"] is False
    assert rows["cxmpute-hello/hello-hourly"]["work_pool"] == "cxmpute-network"
    assert invoke(deployments_app, "ls").exit_code == 0


def test_pause_and_resume(deployed, prefect_api):
    assert invoke(deployments_app, "pause", "diamond-nightly").exit_code == 0
    assert by_name()["cxmpute-template/diamond-nightly"].paused
    resumed = invoke(deployments_app, "resume", "cxmpute-template/diamond-nightly")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed cxmpute-template/diamond-nightly" in resumed.stdout
    assert not by_name()["cxmpute-template/diamond-nightly"].paused


def test_run_creates_a_flow_run_with_the_given_parameters(deployed, prefect_api):
    started = invoke(deployments_app, "run", "hello-hourly", "--param", "name=ada", "--param", "times=3")
    assert started.exit_code == 0, started.output
    deployment = by_name()["cxmpute-hello/hello-hourly"]
    runs = [r for r in runs_of(deployment.id) if r.parameters.get("name") == "ada"]
    assert len(runs) == 1 and str(runs[0].id) in started.stdout
    # the deployment's own parameters fill in what the command line leaves out; JSON values keep their type
    assert runs[0].parameters == {"name": "ada", "times": 3}
    assert runs[0].work_pool_name == "cxmpute-network" and runs[0].work_queue_name == "default"

    refused = invoke(deployments_app, "run", "hello-hourly", "--param", "times=many")
    assert refused.exit_code == 1 and "times" in refused.stderr
    # a misspelled parameter, or a template's run input it does not declare, is refused before any run exists
    misspelled = invoke(deployments_app, "run", "hello-hourly", "--param", "nmae=ada")
    assert misspelled.exit_code == 1 and "(param.nmae)" in misspelled.stderr
    assert "its parameters: name, times" in " ".join(misspelled.stderr.split())
    bad_input = invoke(deployments_app, "run", "diamond-nightly", "--param", 'inputs={"topik": "x"}')
    assert bad_input.exit_code == 1 and "(param.inputs.topik)" in bad_input.stderr, bad_input.output
    template = by_name()["cxmpute-template/diamond-nightly"]
    assert not [r for r in runs_of(deployment.id) if "nmae" in r.parameters]
    assert not [r for r in runs_of(template.id) if "topik" in (r.parameters.get("inputs") or {})]
    unknown = invoke(deployments_app, "run", "no-such-deployment")
    assert unknown.exit_code == 1 and "no deployment 'no-such-deployment'" in unknown.stderr


def test_an_event_trigger_starts_a_run_with_parameters_from_the_event(deployed, prefect_api):
    deployment = by_name()["cxmpute-hello/hello-on-event"]
    who = f"grace-{uuid.uuid4().hex[:6]}"
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "cxmpute.hello.requested",
        "resource": {"prefect.resource.id": f"cxmpute.greeting.{who}", "prefect.resource.name": who},
    }
    # the event as a platform process posts it: Prefect answers only callers with its auth string
    assert httpx.post(f"{prefect_api}/events", json=[event], headers=basic(auth_string())).status_code == 204
    for _ in range(300):
        runs = [r for r in runs_of(deployment.id) if r.parameters.get("name") == who]
        if runs:
            break
        time.sleep(0.1)
    assert runs, "the trigger did not start a run"


def test_delete_removes_the_deployment_and_its_triggers(prefect_api, tmp_path):
    doc = yaml.safe_load(PREFECT_FILE.read_text())
    doc["deployments"] = [dict(d, name="doomed-on-event") for d in doc["deployments"] if d["name"] == "hello-on-event"]
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(doc))
    assert invoke(deploy_app, "--prefect-file", str(tmp_path / "prefect.yaml")).exit_code == 0
    deployment_id = by_name()["cxmpute-hello/doomed-on-event"].id
    assert len(automations_of(deployment_id)) == 1

    deleted = invoke(deployments_app, "delete", "doomed-on-event")
    assert deleted.exit_code == 0, deleted.output
    assert "cxmpute-hello/doomed-on-event" not in by_name()
    assert automations_of(deployment_id) == []
    again = invoke(deployments_app, "delete", "doomed-on-event")
    assert again.exit_code == 1 and "no deployment" in again.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prefect.yaml"
    path.write_text(text)
    return path


BAD = """
deployments:
  - name: typo
    entrypoint: flows.examples.hello.hello
    schedual: {cron: "0 * * * *"}
    work_pool: {name: cxmpute-network}
  - name: no-pool
    entrypoint: flows.examples.hello.hello
  - name: bad-schedules
    entrypoint: flows.examples.hello.hello
    schedules:
      - cron: "not a cron"
      - {cron: "0 * * * *", interval: 60}
    work_pool: {name: cxmpute-network}
  - name: bad-params
    entrypoint: flows.examples.hello.hello
    parameters: {times: lots, colour: red}
    work_pool: {name: cxmpute-network}
  - name: missing-flow
    entrypoint: flows.examples.hello.nothing_here
    work_pool: {name: cxmpute-network}
  - name: broken-template
    entrypoint: flows.template_runs.run_template
    parameters: {template: broken.yaml}
    work_pool: {name: cxmpute-network}
  - name: web-no-question
    entrypoint: flows.template_runs.run_template
    parameters: {template: web_research.yaml}
    work_pool: {name: cxmpute-network}
  - name: bad-trigger
    entrypoint: flows.examples.hello.hello
    triggers: [{type: event, posture: sideways}]
    work_pool: {name: cxmpute-network}
  - name: typo
    entrypoint: flows.examples.hello.hello
    work_pool: {name: cxmpute-network}
  - name: builds
    entrypoint: flows.examples.hello.hello
    build: [{prefect.deployments.steps.run_shell_script: {script: make}}]
    work_pool: {name: cxmpute-network}
"""


def test_every_problem_of_a_file_is_reported_at_once_naming_deployment_and_field(tmp_path):
    with pytest.raises(DeployFileInvalid) as caught:
        plan(write(tmp_path, BAD), all_=True)
    found = {(p.deployment, p.field) for p in caught.value.problems}
    assert {
        ("typo", "name"),
        ("typo", "schedual"),
        ("no-pool", "work_pool.name"),
        ("bad-schedules", "schedules[0]"),
        ("bad-schedules", "schedules[1]"),
        ("bad-params", "parameters"),
        ("missing-flow", "entrypoint"),
        ("broken-template", "parameters.template"),
        ("web-no-question", "parameters.inputs.question"),
        ("bad-trigger", "triggers[0]"),
        ("builds", "build"),
    } <= found
    messages = {(p.deployment, p.field): p.message for p in caught.value.problems}
    assert "known: diamond.yaml" in messages[("broken-template", "parameters.template")]
    assert "exactly one of cron, interval or rrule" in messages[("bad-schedules", "schedules[1]")]


def test_a_template_is_validated_like_any_workflow_document(tmp_path, monkeypatch):
    import flows.template_runs as template_runs

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "bad.yaml").write_text("name: bad\nnodes:\n  - {id: a, agent: nope.agent}\n")
    monkeypatch.setattr(template_runs, "TEMPLATES", templates)
    path = write(
        tmp_path,
        "deployments:\n  - name: t\n    entrypoint: flows.template_runs.run_template\n"
        "    parameters: {template: bad.yaml}\n    work_pool: {name: p}\n",
    )
    with pytest.raises(DeployFileInvalid) as caught:
        plan(path)
    [problem] = caught.value.problems
    assert problem.field == "parameters.template" and "node 'a'" in problem.message and "nope.agent" in problem.message


def test_a_bad_file_exits_1_with_a_table_and_creates_nothing(tmp_path):
    # No Prefect server is configured: the file is refused before any connection is tried.
    result = cli("deploy", "--prefect-file", str(write(tmp_path, BAD)), "--all")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for text in ("problem(s)", "no-pool", "work_pool.name", "bad-schedules", "schedules[1]", "broken-template"):
        assert text in result.stderr


@pytest.mark.parametrize(
    "args, text",
    [
        (("--prefect-file", "absent.yaml"), "no such file"),
        (("--prefect-file", "unclosed.yaml"), "not valid YAML"),
        (("--prefect-file", str(PREFECT_FILE)), "--all"),
        (("--prefect-file", str(PREFECT_FILE), "--name", "nope"), "nope"),
    ],
)
def test_files_that_cannot_be_deployed_are_refused_with_exit_1(tmp_path, monkeypatch, args, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unclosed.yaml").write_text("deployments: [\n")
    refused = invoke(deploy_app, *args)
    assert refused.exit_code == 1, refused.output
    assert text in refused.stderr


def test_prefects_own_deploy_reads_the_same_file_and_updates_the_same_deployments(deployed, prefect_api):
    before = {n: d.id for n, d in by_name().items()}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **client_env(prefect_api), "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {n: d.id for n, d in by_name().items()} == before


GOOD_NEW = "  - name: good-new\n    entrypoint: flows.examples.hello.hello\n    work_pool: {name: cxmpute-network}\n"


def test_job_variables_are_checked_against_the_pool_before_anything_is_created(deployed, tmp_path):
    path = write(
        tmp_path,
        "deployments:\n" + GOOD_NEW + "  - name: bad-job-variables\n    entrypoint: flows.examples.hello.hello\n"
        "    work_pool: {name: cxmpute-network, job_variables: {stream_output: not-a-bool}}\n",
    )
    with pytest.raises(DeployFileInvalid) as caught:
        asyncio.run(apply(plan(path, all_=True)))
    [problem] = caught.value.problems
    assert (problem.deployment, problem.field) == ("bad-job-variables", "work_pool.job_variables.stream_output")
    refused = invoke(deploy_app, "--prefect-file", str(path), "--all")
    assert refused.exit_code == 1 and "bad-job-variables" in refused.stderr, refused.output
    assert not {"cxmpute-hello/good-new", "cxmpute-hello/bad-job-variables"} & set(by_name())


def test_what_the_server_refuses_partway_leaves_no_deployment_of_the_file_behind(deployed, tmp_path):
    """Two schedules under one slug pass the file's checks; the server refuses them (409) after the deployment
    before was created, which is then removed: all or nothing."""
    path = write(
        tmp_path,
        "deployments:\n" + GOOD_NEW + "  - name: same-slugs\n    entrypoint: flows.examples.hello.hello\n"
        "    work_pool: {name: cxmpute-network}\n"
        "    schedules: [{interval: 60, slug: a}, {interval: 120, slug: a}]\n",
    )
    refused = invoke(deploy_app, "--prefect-file", str(path), "--all")
    assert refused.exit_code == 1 and "same-slugs" in refused.stderr, refused.output
    assert not {"cxmpute-hello/good-new", "cxmpute-hello/same-slugs"} & set(by_name())
    assert invoke(deploy_app, "--prefect-file", str(path), "--name", "good-new").exit_code == 0
    assert "cxmpute-hello/good-new" in by_name()
    assert invoke(deployments_app, "delete", "cxmpute-hello/good-new").exit_code == 0
