from __future__ import annotations

from typer.testing import CliRunner

from cxmpute.cli import app

VALUE = "cli-secret-value-0123456789"


def test_set_list_delete_never_prints_the_value():
    runner = CliRunner()
    owner = ["--owner", "0xC11"]
    saved = runner.invoke(app, ["secrets", "set", "ci_token", "--stdin", *owner], input=VALUE + "\n")
    assert saved.exit_code == 0 and "saved ci_token" in saved.output
    listed = runner.invoke(app, ["secrets", "ls", *owner])
    assert listed.exit_code == 0 and "ci_token" in listed.output
    short = runner.invoke(app, ["secrets", "set", "ci_other", "--stdin", *owner], input="abc\n")
    assert short.exit_code == 2 and "(value)" in short.output
    assert runner.invoke(app, ["secrets", "rm", "ci_token", *owner]).exit_code == 0
    gone = runner.invoke(app, ["secrets", "rm", "ci_token", *owner])
    assert gone.exit_code == 2 and "no secret named 'ci_token'" in gone.output
    assert VALUE not in saved.output + listed.output + gone.output
