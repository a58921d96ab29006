"""Static checks of Dockerfile, docker-compose.yml and deploy/k8s: no cluster, no Docker engine, no network."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
INFRA = K8S / "infra"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "telerad"
IMAGE = "telerad"
COMMON_PREFIX = "TELERAD_"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

Doc = dict[str, Any]


def discover_services(services_dir: Path = ROOT / "services") -> list[str]:
    """Every service with a Python package: the directories services/<name>/pyproject.toml."""
    return sorted(path.parent.name for path in services_dir.glob("*/pyproject.toml"))


SERVICES = discover_services()


def env_prefix(service: str) -> str:
    return service.upper().replace("-", "_") + "_"


def load_yaml_documents(path: Path) -> list[Doc]:
    return copy.deepcopy(_parsed(path))  # a copy: a test may change what it got


@functools.cache
def _parsed(path: Path) -> list[Doc]:
    """Each file parsed once per session (the tests read the same manifests many times over)."""
    return [doc for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            if doc is not None]


def kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in [*directory.glob("*.yaml"), *directory.glob("*.yml")] if p.stem != "kustomization")


def all_manifest_documents() -> list[tuple[Path, Doc]]:
    return [
        (path, doc)
        for directory in kustomization_dirs()
        for path in manifest_files(directory)
        for doc in load_yaml_documents(path)
    ]


def doc_id(path: Path, doc: Doc) -> str:
    return f"{path.relative_to(K8S)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def base_objects(kind: str) -> dict[str, Doc]:
    return {
        doc["metadata"]["name"]: doc
        for path in manifest_files(K8S)
        for doc in load_yaml_documents(path)
        if doc["kind"] == kind
    }


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Doc = spec["template"]["spec"]
    return template


def telerad_container(deployment: Doc) -> Doc:
    containers: list[Doc] = pod_spec(deployment)["containers"]
    [container] = [c for c in containers if c["image"].split(":")[0] == IMAGE]
    return container


def deployed_services_k8s() -> dict[str, Doc]:
    """Deployments running the Telerad image, by the service their args name."""
    deployed = {}
    for deployment in base_objects("Deployment").values():
        args = telerad_container(deployment).get("args", [])
        assert args[:1] == ["serve"] and len(args) == 2, f"{deployment['metadata']['name']}: args {args}"
        deployed[args[1]] = deployment
    return deployed


def resolve_port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def container_env(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


def env_from_keys(container: Doc) -> set[str]:
    config_maps = base_objects("ConfigMap")
    keys: set[str] = set()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            keys |= set(config_maps[source["configMapRef"]["name"]]["data"])
    return keys


def secret_generator_literals(name: str) -> dict[str, str]:
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    [generator] = [g for g in kustomization.get("secretGenerator", []) if g["name"] == name]
    return dict(literal.split("=", 1) for literal in generator["literals"])


# -- Kubernetes ----------------------------------------------------------------------------------


def manifest_params(kinds: set[str] | None = None) -> list[Any]:
    return [
        pytest.param(path, doc, id=doc_id(path, doc))
        for path, doc in all_manifest_documents()
        if kinds is None or doc["kind"] in kinds
    ]


@pytest.mark.parametrize(("path", "doc"), manifest_params())
def test_manifest_is_valid_for_kubernetes(path: Path, doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{doc_id(path, doc)} at {'.'.join(map(str, e.path))}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        pytest.fail(e.message)
    assert "namespace" not in doc.get("metadata", {}), "the kustomization sets the namespace"


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: str(d.relative_to(ROOT)))
def test_kustomization_lists_every_manifest_in_its_directory(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    entries = [*kustomization.get("resources", []), *kustomization.get("components", [])]
    assert len(entries) == len(set(entries)), f"listed twice: {[e for e, n in Counter(entries).items() if n > 1]}"
    listed_files = {e for e in entries if not (directory / e).is_dir()}
    on_disk = {p.name for p in manifest_files(directory)}
    assert listed_files - on_disk == set(), "listed but missing"
    assert on_disk - listed_files == set(), "in the directory but not listed"
    for entry in set(entries) - listed_files:
        assert (directory / entry / "kustomization.yaml").is_file(), f"{entry} is no kustomization"
    assert kustomization.get("namespace") == NAMESPACE


def test_the_base_leaves_the_development_infrastructure_out() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    entries = [*kustomization.get("resources", []), *kustomization.get("components", [])]
    assert not any("infra" in Path(entry).parts for entry in entries), "production must be able to leave infra out"
    assert base_objects("StatefulSet") == {}
    assert base_objects("Secret") == {}, "real secrets never live in the base"


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: str(d.relative_to(ROOT)))
def test_kustomize_renders_valid_objects(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_development_secrets_point_at_the_development_infrastructure() -> None:
    services = {
        doc["metadata"]["name"]: doc
        for path in manifest_files(INFRA)
        for doc in load_yaml_documents(path)
        if doc["kind"] == "Service"
    }
    secrets = secret_generator_literals("telerad-secrets")
    infra = secret_generator_literals("telerad-infra")
    for key, user, password in [
        ("TELERAD_AMQP_URL", "RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"),
        ("TELERAD_POSTGRES_URL", "POSTGRES_USER", "POSTGRES_PASSWORD"),
    ]:
        url = urlsplit(secrets[key])
        assert url.hostname in services, f"{key}: no Service {url.hostname}"
        assert url.port in {p["port"] for p in services[url.hostname]["spec"]["ports"]}, key
        assert (url.username, url.password) == (infra[user], infra[password]), key


def test_services_read_the_secret_the_infrastructure_generates() -> None:
    generated = {g["name"] for g in yaml.safe_load((INFRA / "kustomization.yaml").read_text())["secretGenerator"]}
    for name, deployment in deployed_services_k8s().items():
        refs = {s["secretRef"]["name"] for s in telerad_container(deployment).get("envFrom", []) if "secretRef" in s}
        assert refs, f"{name} reads no secret"
        assert refs <= generated, name
        own_prefix = name.upper().replace("-", "_") + "_"
        for ref in refs:
            keys = set(secret_generator_literals(ref))
            assert all(key.startswith((COMMON_PREFIX, own_prefix)) for key in keys), f"{ref}: {sorted(keys)}"


def assert_same_services(deployed: set[str], where: str) -> None:
    packaged = set(SERVICES)
    assert not packaged - deployed, f"service packages missing from {where}: {sorted(packaged - deployed)}"
    assert not deployed - packaged, f"in {where} but no services/<name>/pyproject.toml: {sorted(deployed - packaged)}"


def test_kubernetes_deploys_exactly_the_service_packages() -> None:
    assert_same_services(set(deployed_services_k8s()), "deploy/k8s")


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_and_service_run_the_service(service: str) -> None:
    deployment = base_objects("Deployment").get(service)
    svc = base_objects("Service").get(service)
    assert deployment is not None, f"no Deployment {service} in deploy/k8s"
    assert svc is not None, f"no Service {service} in deploy/k8s"
    container = telerad_container(deployment)
    assert container["args"] == ["serve", service]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items(), "the Service selects no pod of the Deployment"

    env = container_env(container)
    prefix = env_prefix(service)
    for name in [*env, *env_from_keys(container)]:
        assert name.startswith((COMMON_PREFIX, prefix)), f"{name} is neither {COMMON_PREFIX}* nor {prefix}*"
    assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
    http_port = int(env[f"{prefix}HTTP_PORT"])

    service_ports = {p["name"]: resolve_port(container, p["targetPort"]) for p in svc["spec"]["ports"]}
    assert service_ports["http"] == http_port, "the Service targets another port than the service listens on"
    for name, probe, path in [
        ("liveness", "livenessProbe", "/healthz"),
        ("readiness", "readinessProbe", "/readyz"),
        ("startup", "startupProbe", None),
    ]:
        assert probe in container, f"no {name} probe"
        get = container[probe]["httpGet"]
        assert path is None or get["path"] == path
        assert resolve_port(container, get["port"]) == http_port, f"{name} probe on another port"


@pytest.mark.parametrize(("path", "doc"), manifest_params(WORKLOAD_KINDS))
def test_workload_is_hardened(path: Path, doc: Doc) -> None:
    spec = pod_spec(doc)
    assert spec.get("automountServiceAccountToken") is False
    pod_security = spec.get("securityContext", {})
    assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        security = {**pod_security, **container.get("securityContext", {})}
        name = container["name"]
        assert security.get("runAsNonRoot") is True, name
        assert security.get("runAsUser", 1) != 0, name
        assert security.get("allowPrivilegeEscalation") is False, name
        assert "ALL" in security.get("capabilities", {}).get("drop", []), name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container.get("resources", {}).get(bound, {})), f"{name}: {bound}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, f"{name}: no {probe}"
        if container["image"].split(":")[0] == IMAGE:
            assert security.get("readOnlyRootFilesystem") is True, name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is no emptyDir"


def test_dicom_store_is_on_a_persistent_volume() -> None:
    deployment = base_objects("Deployment")["dicom-ingest"]
    container = telerad_container(deployment)
    storage_dir = container_env(container)["DICOM_INGEST_STORAGE_DIR"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == storage_dir]
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] in base_objects("PersistentVolumeClaim")
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "a ReadWriteOnce volume cannot be shared in a rollout"


# -- docker-compose.yml --------------------------------------------------------------------------


def compose() -> Doc:
    loaded: Doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_env(service: Doc) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_ports(service: Doc) -> list[tuple[int | None, int]]:
    """(published, target) for each port: short syntax [[ip:]published:]target[/proto], or the long one."""
    ports: list[tuple[int | None, int]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((int(port["published"]) if "published" in port else None, int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            ports.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1])))
    return ports


def compose_command(service: Doc) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def compose_telerad_services() -> dict[str, Doc]:
    return {name: s for name, s in compose()["services"].items() if compose_command(s)[:1] == ["serve"]}


def listening_ports(service: str, env: dict[str, str]) -> set[int]:
    return {int(v) for k, v in env.items() if k.startswith(env_prefix(service)) and k.endswith("_PORT")}


def test_compose_runs_exactly_the_service_packages() -> None:
    services = compose_telerad_services()
    assert_same_services(set(services), "docker-compose.yml")
    for name, service in services.items():
        assert service["command"] == ["serve", name]


def test_compose_dependencies_exist_and_have_health_checks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            depends_on = {target: {"condition": "service_started"} for target in depends_on}
        for target, how in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert target != name
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
    for name in compose_telerad_services():
        assert {"rabbitmq", "postgres"} <= set(services[name].get("depends_on", {})), name


def test_compose_builds_one_image_for_all_services() -> None:
    services = compose()["services"]
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == set(compose_telerad_services()), "only the Telerad services are built, each of them"
    assert {json.dumps(s["build"], sort_keys=True) for s in built.values()} == {json.dumps(".")}
    images = {s.get("image") for s in built.values()}
    assert len(images) == 1 and None not in images, f"one image name for the one build: {images}"
    [image] = images
    assert image.split(":")[0] == IMAGE
    assert {image["name"] for image in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]} == {IMAGE}
    for name, service in services.items():
        if name not in built:
            tag = service["image"].rpartition(":")[2]
            assert ":" in service["image"] and tag != "latest", f"{name}: pin the image tag"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_matches_its_deployment(service: str) -> None:
    composed = compose_telerad_services().get(service)
    assert composed is not None, f"no service {service} in docker-compose.yml"
    env = compose_env(composed)
    prefix = env_prefix(service)
    for name in env:
        assert name.startswith((COMMON_PREFIX, prefix)), f"{name} is neither {COMMON_PREFIX}* nor {prefix}*"
    assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
    assert {"TELERAD_AMQP_URL", "TELERAD_POSTGRES_URL"} <= set(env)
    container = telerad_container(base_objects("Deployment")[service])
    k8s_env = container_env(container)
    for key, value in env.items():
        if key.startswith(prefix) and key in k8s_env and key.endswith(("_PORT", "_HOST", "_URL", "_DIR")):
            assert k8s_env[key] == value, f"{key}: compose {value}, kubernetes {k8s_env[key]}"
    assert listening_ports(service, env) == {p["containerPort"] for p in container["ports"]}
    assert f"{prefix}HTTP_PORT" in env and "healthcheck" in composed


def test_compose_published_ports_do_not_collide() -> None:
    published: list[int] = []
    telerad = compose_telerad_services()
    for name, service in compose()["services"].items():
        for host, target in compose_ports(service):
            if host is not None:
                published.append(host)
            if name in telerad:
                assert target in listening_ports(name, compose_env(service)), f"{name} does not listen on {target}"
    assert published, "nothing is published"
    assert sorted(published) == sorted(set(published)), f"published twice: {published}"
    http_ports = [int(compose_env(s)[f"{env_prefix(n)}HTTP_PORT"]) for n, s in telerad.items()]
    assert len(http_ports) == len(set(http_ports)), f"HTTP ports collide: {http_ports}"
    assert {8080, 11112} <= set(published)


#: URLs that name where users reach the platform, not a service inside it.
PUBLIC_URLS = {"TELERAD_PUBLIC_URL"}


def test_urls_between_services_name_a_service_and_its_port() -> None:
    services = compose()["services"]
    telerad = compose_telerad_services()
    k8s_services = base_objects("Service")
    for name, service in telerad.items():
        env = compose_env(service)
        k8s_env = container_env(telerad_container(base_objects("Deployment")[name]))
        for key in (k for k in env if k.endswith("_URL") and k not in PUBLIC_URLS):
            url = urlsplit(env[key])
            assert url.hostname in services, f"{name} {key}: no compose service {url.hostname}"
            if url.hostname in telerad:
                assert url.port in listening_ports(url.hostname, compose_env(services[url.hostname])), key
            if key in k8s_env:
                k8s_url = urlsplit(k8s_env[key])
                assert k8s_url.hostname in k8s_services, f"{name} {key}: no Service {k8s_url.hostname}"
                assert k8s_url.port in {p["port"] for p in k8s_services[k8s_url.hostname]["spec"]["ports"]}, key


def test_compose_development_credentials_agree() -> None:
    services = compose()["services"]
    for name, service in compose_telerad_services().items():
        env = compose_env(service)
        amqp, postgres = urlsplit(env["TELERAD_AMQP_URL"]), urlsplit(env["TELERAD_POSTGRES_URL"])
        rabbitmq_env, postgres_env = compose_env(services["rabbitmq"]), compose_env(services["postgres"])
        assert (amqp.username, amqp.password) == (
            rabbitmq_env["RABBITMQ_DEFAULT_USER"],
            rabbitmq_env["RABBITMQ_DEFAULT_PASS"],
        ), name
        assert (postgres.username, postgres.password) == (
            postgres_env["POSTGRES_USER"],
            postgres_env["POSTGRES_PASSWORD"],
        ), name
        assert postgres.path in {"", "/"}, f"{name}: each service picks its own database"


# -- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (i.upper(), rest.strip())
        for i, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def test_dockerfile_builds_a_non_root_image_of_telerad() -> None:
    instructions = dockerfile_instructions()

    def of(kind: str) -> list[str]:
        return [args for i, args in instructions if i == kind]

    args = dict(a.split("=", 1) for a in of("ARG") if "=" in a)
    stages = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a).split()[0] for a in of("FROM")]
    assert len(stages) >= 2, "multi-stage"
    assert all(image.startswith("python:3.11-slim") for image in stages), stages
    [user] = of("USER")[-1:]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric non-root user"
    for deployment in deployed_services_k8s().values():
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == int(uid)
    assert json.loads(of("ENTRYPOINT")[-1]) == ["telerad"]
    exposed = {int(p.split("/")[0]) for e in of("EXPOSE") for p in e.split()}
    for deployment in deployed_services_k8s().values():
        assert {p["containerPort"] for p in telerad_container(deployment)["ports"]} <= exposed
    installs = [r for r in of("RUN") if "pip install" in r]
    assert installs and all("-c constraints.txt" in r for r in installs)
    assert not any(re.search(r"\s(-e|--editable)\s", r) for r in installs), "install wheels, not editable"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv"} <= ignored
