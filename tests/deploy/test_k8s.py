"""The Kubernetes manifests are valid objects and describe the same cluster as docker-compose.

Every document of every file in deploy/k8s/ is checked against the Kubernetes API's own models (the
``kubernetes`` client): no unknown field at any depth, every value of its declared type, every required field
present. Custom resources (a PyTorchJob, say) are checked through the pod templates they embed."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import kubernetes.client as k8s
import pytest
import typer
import yaml

from cxmpute.cli import app

DEPLOY = Path(__file__).parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.y*ml"))
COMPOSE = DEPLOY / "docker-compose.yml"
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
# Quantities (resources, capacities) are strings in the client's models; the API server also takes numbers.
QUANTITY_MODELS = {"V1ResourceRequirements", "V1VolumeResourceRequirements"}
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
_PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "datetime": (str, datetime.datetime),
    "date": (str, datetime.date),
    "bytes": (str,),
}


def _model_for(api_version: str, kind: str) -> str | None:
    version = api_version.rsplit("/", 1)[-1]
    name = f"{version[0].upper()}{version[1:]}{kind}"
    return name if hasattr(k8s, name) else None


def check_value(value, type_name: str, path: str, parent: str = "") -> list[str]:
    """Problems with ``value`` as the client type ``type_name``: "List[V1Container]", "Dict[str, str]", ...
    (older clients spell them "list[V1Container]", "dict(str, str)")."""
    if value is None:
        return []
    if type_name.lower().startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check_value(item, type_name[5:-1], f"{path}[{i}]", parent)]
    if type_name.lower().startswith("dict"):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        inner = re.match(r"dict[\[(]([^,]*), (.*)[\])]$", type_name, re.I).group(2)
        if inner == "str" and parent in QUANTITY_MODELS:
            inner = "quantity"
        return [p for key, item in value.items() for p in check_value(item, inner, f"{path}.{key}", parent)]
    if type_name == "quantity":
        if isinstance(value, bool) or not QUANTITY.match(str(value)):
            return [f"{path}: {value!r} is not a quantity"]
        return []
    if type_name in _PRIMITIVES:
        kinds = _PRIMITIVES[type_name]
        if type_name in ("int", "float") and isinstance(value, bool) or not isinstance(value, kinds):
            return [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
        return []
    return check_model(value, type_name, path)


def check_model(data, model: str, path: str) -> list[str]:
    """Unknown fields, wrong types and missing required fields of ``data`` as the client model ``model``."""
    if not isinstance(data, dict):
        return [f"{path}: expected a {model} mapping, got {type(data).__name__}"]
    cls = getattr(k8s, model)
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    problems = [f"{path}.{key}: unknown field of {model}" for key in data if key not in fields]
    for key, value in data.items():
        if key in fields:
            problems += check_value(value, cls.openapi_types[fields[key]], f"{path}.{key}", model)
    if not problems:
        try:  # the constructor refuses missing required fields and values outside their enums
            k8s.ApiClient()._ApiClient__deserialize(data, model)
        except (ValueError, TypeError) as exc:
            problems.append(f"{path}: {exc}")
    return problems


def embedded_pod_templates(data, path: str):
    """Pod templates anywhere in a custom resource: a ``template`` mapping whose spec has containers."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}"
            if key == "template" and isinstance(value, dict) and "containers" in (value.get("spec") or {}):
                yield here, value
            else:
                yield from embedded_pod_templates(value, here)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from embedded_pod_templates(item, f"{path}[{i}]")


def validate(doc: dict, where: str) -> list[str]:
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        return [f"{where}: a manifest needs apiVersion and kind"]
    if not (doc.get("metadata") or {}).get("name"):
        return [f"{where}: metadata.name is missing"]
    model = _model_for(doc["apiVersion"], doc["kind"])
    if model is not None:
        return check_model(doc, model, where)
    templates = list(embedded_pod_templates(doc.get("spec"), f"{where}.spec"))
    if not templates:
        return [f"{where}: no schema for {doc['apiVersion']} {doc['kind']} and no pod template in it"]
    problems = check_model(doc["metadata"], "V1ObjectMeta", f"{where}.metadata")
    for path, template in templates:
        problems += check_model(template, "V1PodTemplateSpec", path)
    return problems


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.name}#{i}", doc))
    return docs


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_object(path):
    problems = []
    for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
        if doc is not None:
            problems += validate(doc, f"{path.name}#{i}")
    assert problems == []


def test_the_validator_refuses_unknown_fields_wrong_types_and_missing_required_fields():
    container = {"name": "api", "image": "cxmpute/platform:local"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container]}},
        },
    }
    assert validate(deployment, "d") == []

    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["enviroment"] = []
    assert validate(typo, "d") == ["d.spec.template.spec.containers[0].enviroment: unknown field of V1Container"]

    number = yaml.safe_load(yaml.safe_dump(deployment))
    number["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": 5}]
    assert validate(number, "d") == ["d.spec.template.spec.containers[0].env[0].value: expected str, got int 5"]

    missing = yaml.safe_load(yaml.safe_dump(deployment))
    del missing["spec"]["selector"]
    assert any("selector" in p for p in validate(missing, "d"))

    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "train"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [{**container, "resource": {}}]}}}
            }
        },
    }
    assert validate(job, "j") == [
        "j.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].resource: unknown field of V1Container"
    ]
    assert validate({"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "t"}}, "t") == [
        "t: no schema for example.org/v1 Thing and no pod template in it"
    ]


# --- the same cluster as docker-compose -------------------------------------------------------------------


def _resolved_env(container: dict, objects: dict) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = objects[(kind, ref["name"])]
        names |= set(obj.get("data") or {}) | set(obj.get("stringData") or {})
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef") or (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            kind = "Secret" if "secretKeyRef" in e["valueFrom"] else "ConfigMap"
            obj = objects[(kind, ref["name"])]
            assert ref["key"] in {**(obj.get("data") or {}), **(obj.get("stringData") or {})}, (e, ref)
    return names


def k8s_workloads() -> dict[str, dict]:
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in documents()}
    workloads = {}
    for (kind, name), doc in objects.items():
        if kind in WORKLOADS:
            container = doc["spec"]["template"]["spec"]["containers"][0]
            workloads[name] = {"doc": doc, "container": container, "env": _resolved_env(container, objects)}
    return workloads


def _component(service: str) -> str:
    """The k8s workload a compose service is one replica of: storage-1 → storage, provider-cheap → provider."""
    if service.startswith("provider-"):
        return "provider"
    return re.sub(r"-\d+$", "", service)


def _cli_params(argv: list[str]) -> dict:
    """Parses ``cxmpute ...`` argv the way the CLI would, refusing unknown commands and options."""
    assert argv[0] == "cxmpute", argv
    ctx = typer.main.get_command(app).make_context("cxmpute", list(argv[1:]), resilient_parsing=False)
    command, args = ctx.command, list(argv[1:])
    while hasattr(command, "get_command"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"cxmpute has no command {args[0]!r} ({argv})"
        command, args = sub, args[1:]
    return command.make_context(command.name, args).params


def _argv(container_or_service: dict) -> list[str]:
    """The cxmpute argv a container runs, through a `sh -c '... exec cxmpute X "$@"' --` wrapper too."""
    command = list(container_or_service.get("command") or container_or_service.get("entrypoint") or [])
    args = list(container_or_service.get("args") or [])
    if command[:2] == ["sh", "-c"]:
        script = command[2]
        words = re.search(r"(cxmpute [\w \-]+?)(?: \\?\"|\"|$)", script).group(1).split()
        return words + args
    return command + args


def test_kubernetes_runs_the_same_components_as_compose():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {_component(s) for s in services} == set(k8s_workloads())


def test_kubernetes_gives_each_component_the_environment_compose_does():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    workloads = k8s_workloads()
    for name, service in services.items():
        workload = workloads[_component(name)]
        compose_env = set(service.get("environment") or {})
        if _component(name) == "provider":
            # Compose pins one wallet per provider service; the StatefulSet derives one per pod from a seed.
            compose_env = compose_env - {"CXMPUTE_WALLET_KEY"} | {"CXMPUTE_WALLET_SEED"}
            assert "export CXMPUTE_WALLET_KEY=" in workload["container"]["command"][2]
        if name == "postgres":
            compose_env |= {"PGDATA"}
        assert compose_env == workload["env"], name


def test_every_command_is_one_the_cli_accepts_and_matches_compose():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    workloads = k8s_workloads()
    for name, service in services.items():
        if name == "postgres":
            continue
        compose_argv = _argv(service)
        k8s_argv = _argv(workloads[_component(name)]["container"])
        if compose_argv[0] == "prefect":
            assert compose_argv == k8s_argv == ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
            continue
        assert compose_argv[:3] == k8s_argv[:3], name
        if compose_argv[1:4] == ["storage", "nodes", "add"]:  # once per node of STORAGE_NODES
            for url in services[name]["environment"]["STORAGE_NODES"].split():
                assert _cli_params(compose_argv + [url])["url"] == url
            continue
        compose_params, k8s_params = _cli_params(compose_argv), _cli_params(k8s_argv)
        if compose_argv[1:3] != ["provider", "start"]:  # compose's providers differ in price and size
            assert compose_params == k8s_params, name
    storage_nodes = services["storage-join"]["environment"]["STORAGE_NODES"].split()
    assert storage_nodes == [f"http://{s}:8700" for s in services if _component(s) == "storage" and s != "storage-join"]
    k8s_nodes = next(e["value"] for e in workloads["storage-join"]["container"]["env"] if e["name"] == "STORAGE_NODES")
    replicas = workloads["storage"]["doc"]["spec"]["replicas"]
    assert k8s_nodes.split() == [f"http://storage-{i}.storage:8700" for i in range(replicas)]


def test_images_are_the_ones_compose_builds():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    workloads = k8s_workloads()
    for name, service in services.items():
        assert workloads[_component(name)]["container"]["image"] == service["image"], name


def test_providers_get_what_the_sandbox_needs_in_both():
    """User namespaces (seccomp and AppArmor unconfined), a /proc of the job's own (unmasked system paths)
    the scratch tmpfs mount (CAP_SYS_ADMIN) and the loopback of each job's network namespace (CAP_NET_ADMIN)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    security = k8s_workloads()["provider"]["container"]["securityContext"]
    for name in (s for s in services if _component(s) == "provider"):
        assert set(services[name]["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
        assert services[name]["cap_add"] == ["SYS_ADMIN", "NET_ADMIN"]
        assert "umount" in services[name]["entrypoint"][2]  # compose has no option for an unmasked /proc
    assert security["capabilities"]["add"] == ["SYS_ADMIN", "NET_ADMIN"]
    assert security["seccompProfile"]["type"] == security["appArmorProfile"]["type"] == "Unconfined"
    assert (
        security["procMount"] == "Unmasked"
        and k8s_workloads()["provider"]["doc"]["spec"]["template"]["spec"]["hostUsers"] is False
    )
