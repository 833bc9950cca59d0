"""`cxmpute inference serve` refuses a command line naming no model with one line naming --model (exit 1),
before any model library is loaded."""

from __future__ import annotations

from typer.testing import CliRunner

from cxmpute.cli import app


def test_serving_nothing_is_one_line_naming_model():
    result = CliRunner().invoke(app, ["inference", "serve"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert result.stderr.strip() == "error (--model): give at least one --model, --embedding, --image or --speech"
