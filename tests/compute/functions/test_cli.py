"""`cxmpute functions` through the platform client: a failed invocation shows the handler's output and one
line naming the limit (exit 1), refusals name the field, bad input is refused before the platform is asked,
and an unreachable platform is exit 2."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from cxmpute.cli import app
from cxmpute.settings import get_settings

runner = CliRunner()
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port
HANDLER = """
def handler(event, context):
    print("working on", event["n"])
    if event["n"] < 0:
        raise ValueError("n must not be negative")
    return {"double": 2 * event["n"]}
"""


@pytest.fixture(autouse=True, scope="module")
def _close_pools():
    """Warm interpreters hold sandboxes; later tests (and the host) must not inherit them."""
    yield
    from compute.functions.pool import close_all_pools

    close_all_pools()


def _error_line(result, code: int) -> str:
    """The failure the root CLI printed: the last line on stderr, after a clean exit with ``code``."""
    assert result.exit_code == code and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[-1]


def test_an_invocation_and_its_failure_over_the_api(api_url, tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    deployed = runner.invoke(app, ["functions", "deploy", str(tmp_path / "fn"), "--name", name])
    assert deployed.exit_code == 0 and f"deployed {name} version 1" in deployed.stdout, deployed.output

    done = runner.invoke(app, ["functions", "invoke", name, "--event", '{"n": 21}'])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"double": 42} and "working on 21" in done.stderr

    # The platform's answer names the field and carries the handler's own traceback; before it, what the
    # handler printed.
    failed = runner.invoke(app, ["functions", "invoke", name, "--event", '{"n": -1}'])
    assert failed.exit_code == 1 and isinstance(failed.exception, SystemExit), (failed.output, failed.exception)
    printed, _, reported = failed.stderr.partition("error (handler): ")
    assert "working on -1" in printed and "ValueError: n must not be negative" in reported, failed.stderr

    listed = runner.invoke(app, ["functions", "ls", "--json"])
    assert name in [f["name"] for f in json.loads(listed.stdout)]
    logs = runner.invoke(app, ["functions", "logs", name, "--json"])
    assert [row["status"] for row in json.loads(logs.stdout)][:2] == ["error", "ok"]


def test_refusals_name_the_field(api_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    missing = runner.invoke(app, ["functions", "invoke", "no-such-fn"])
    assert _error_line(missing, 1).startswith("error (name):") and len(missing.stderr.strip().splitlines()) == 1
    assert _error_line(runner.invoke(app, ["functions", "ls", "no-such-fn"]), 1).startswith("error (name):")


def test_bad_input_is_refused_before_the_platform_is_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)  # exit 1, not 2: the platform is never asked
    event = runner.invoke(app, ["functions", "invoke", "fn", "--event", "{not json"])
    assert _error_line(event, 1).startswith("error (--event): not JSON")
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    handler = runner.invoke(app, ["functions", "deploy", str(tmp_path / "fn"), "--name", "fn", "--handler", "x:nope"])
    assert _error_line(handler, 1).startswith("error (handler):")


@pytest.mark.parametrize("args", [["ls"], ["invoke", "fn"], ["logs", "fn"]])
def test_an_unreachable_platform_is_exit_2(args, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)
    result = runner.invoke(app, ["functions", *args])
    assert "not answering" in _error_line(result, 2) and len(result.stderr.strip().splitlines()) == 1
