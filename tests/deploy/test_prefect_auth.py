"""In both deployments the Prefect server requires an auth string, and every container that talks to it sends
that same one, from where credentials live (compose: one value; Kubernetes: the Secret, never the ConfigMap)."""

from __future__ import annotations

import yaml

from tests.deploy.test_k8s import COMPOSE, documents, k8s_workloads


def test_compose_gives_the_server_and_every_client_one_auth_string():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    server = services["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server.startswith("${CXMPUTE_CLUSTER_PREFECT_AUTH_STRING")  # the operator sets it for a real cluster
    clients = {
        name: s["environment"].get("PREFECT_API_AUTH_STRING")
        for name, s in services.items()
        if "PREFECT_API_URL" in (s.get("environment") or {})
    }
    assert {"api", "provider-cheap", "provider-mid", "provider-big"} <= set(clients)
    assert clients == {name: server for name in clients}


def test_kubernetes_gives_the_server_and_every_client_the_secret_auth_string():
    workloads = k8s_workloads()

    def secret_key(workload: str, name: str) -> str | None:
        for e in workloads[workload]["container"].get("env", []):
            if e["name"] == name:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                return ref and ref["key"]
        return None

    server = secret_key("prefect", "PREFECT_SERVER_API_AUTH_STRING")
    assert server is not None
    clients = {
        name: secret_key(name, "PREFECT_API_AUTH_STRING")
        for name, w in workloads.items()
        if "PREFECT_API_URL" in w["env"]
    }
    assert {"api", "provider"} <= set(clients)
    assert clients == {name: server for name in clients}
    for _, doc in documents():
        if doc["kind"] == "ConfigMap":
            assert not any("AUTH" in key for key in doc.get("data") or {}), doc["metadata"]["name"]
