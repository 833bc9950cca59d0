"""The docker-compose cluster stays wired to the platform: every service's command is one our CLIs accept,
and providers reach the API and the Prefect server by the names compose gives them."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from cxmpute.cli import app

COMPOSE = Path(__file__).parents[2] / "deploy" / "docker-compose.yml"


def test_compose_runs_postgres_prefect_the_api_and_three_providers():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"postgres", "prefect", "api"} <= set(services)
    providers = {name: s for name, s in services.items() if name.startswith("provider-")}
    assert len(providers) == 3
    prices = set()
    for service in providers.values():
        env = service["environment"]
        assert env["CXMPUTE_API_URL"] == "http://api:8000" and env["PREFECT_API_URL"] == "http://prefect:4200/api"
        assert env["CXMPUTE_WALLET_KEY"]
        command = service["command"]
        assert command[:3] == ["cxmpute", "provider", "start"]
        ctx = typer.main.get_command(app).make_context("cxmpute", command[1:], resilient_parsing=False)
        start = ctx.command.get_command(ctx, "provider").get_command(ctx, "start")
        params = start.make_context("start", command[3:]).params  # refuses unknown or malformed options
        prices.add(params["price_gwei"])
    assert len(prices) == 3
    assert "CXMPUTE_DATABASE_URL" in services["api"]["environment"]
    assert services["api"]["command"][:2] == ["cxmpute", "serve"]
