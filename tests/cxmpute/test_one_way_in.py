"""One way in: no module but the platform client talks to the platform API with its own HTTP helpers, and the
CLI's commands load only their own package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agxnt", "compute", "cxmpute", "flows", "stxrage", "web")
CLIENT = ROOT / "cxmpute" / "client.py"
# Helpers each CLI module used to carry (and the platform's URL settings they were built from).
HELPER_NAMES = {"_call", "_ok", "_headers", "_login", "_token", "_session_file"}
API_URL_NAMES = {"resolved_api_url", "api_url"}


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p != CLIENT]


def _clients_built_on_the_api_url(tree: ast.AST) -> list[int]:
    """Lines calling ``client(...)``/``async_client(...)``/``httpx.Client(...)`` with the API's URL."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in {"client", "async_client", "Client", "AsyncClient"}:
            continue
        mentioned = {
            n.attr
            for arg in [*node.args, *(k.value for k in node.keywords)]
            for n in ast.walk(arg)
            if isinstance(n, ast.Attribute)
        }
        if mentioned & {"resolved_api_url"}:
            lines.append(node.lineno)
    return lines


def test_no_cli_module_defines_its_own_platform_http_helpers():
    offenders = []
    for path in _modules():
        if not path.name.endswith("cli.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in HELPER_NAMES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} defines {node.name}")
    assert not offenders, "use cxmpute.client.PlatformClient instead:\n" + "\n".join(offenders)


def test_only_the_platform_client_builds_an_http_client_for_the_platform_api():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules()
        for line in _clients_built_on_the_api_url(ast.parse(path.read_text()))
    ]
    assert not offenders, "use cxmpute.client.PlatformClient instead:\n" + "\n".join(offenders)


def test_a_command_group_loads_its_own_package_only():
    """`cxmpute storage --help` must not pay for torch, Prefect, Chroma or web3."""
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cxmpute.cli import app\n"
        "result = CliRunner().invoke(app, ['storage', '--help'])\nassert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'prefect', 'chromadb', 'web3', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "", f"`cxmpute storage --help` imported {done.stdout.strip()}"
