"""Small Python flows that show how a flow module becomes a Prefect deployment (see deploy/prefect.yaml)."""
