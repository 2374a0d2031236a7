"""examples/kubernetes/: valid for Kubernetes, and saying what docs/deployment.md says.

Each manifest is validated against the Kubernetes API's own OpenAPI schemas
(kubernetes-validate, strict: a field Kubernetes does not know fails), as the rendered
GitOps manifests are, both as written and as ``kubectl kustomize`` renders them when
kubectl is installed. Then what the schemas cannot know: the kustomization lists every
manifest, the probes hit ``/health`` on the served port, the pods run as non-root with
nothing to escalate, the server's and the migration Job's command lines parse with the
real ``mlflow server`` and ``mlflow-governance db upgrade`` commands and name one
database, the settings are the ones the product reads, every secret key read is in the
example Secret, and the policy in the ConfigMap loads with the project's own loader.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_governance.config import ENV_POLICY, ENV_POLICY_REFRESH, ENV_PUBLIC_URL
from mlflow_governance.policy.loader import load_policy_text
from mlflow_governance.server import ENV_DISPATCHER
from mlflow_governance.server.settings import ENV_SECRET_KEY

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "examples" / "kubernetes"
DOC = ROOT / "docs" / "deployment.md"
K8S_VERSION = kubernetes_validate.utils.latest_version()
#: Not applied with the rest: the Secret's keys, with placeholders.
SECRET_EXAMPLE = "secret.example.yaml"
KUSTOMIZATION = "kustomization.yaml"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8")))


def manifest_files() -> list[str]:
    return sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != KUSTOMIZATION)


def by_kind() -> dict[str, dict[str, Any]]:
    docs = [load(name) for name in manifest_files()]
    kinds = [doc["kind"] for doc in docs]
    assert len(set(kinds)) == len(kinds), f"one manifest per kind: {kinds}"
    return {doc["kind"]: doc for doc in docs}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def secret_refs(workload: dict[str, Any]) -> set[tuple[str, str]]:
    """(secret name, key) of every Secret the pod reads, from env and volumes."""
    spec = workload["spec"]["template"]["spec"]
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for c in spec["containers"]
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            refs |= {
                (volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]
            }
    return refs


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in c.get("env", [])}


# ---------------------------------------------------------------------- validity


@pytest.mark.parametrize("name", manifest_files())
def test_each_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    kubernetes_validate.validate(load(name), K8S_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load(KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == sorted(
        name for name in manifest_files() if name != SECRET_EXAMPLE
    )
    images = {image["name"] for image in kustomization["images"]}
    used = {container(by_kind()[kind])["image"] for kind in ("Deployment", "Job")}
    assert used == images == {"mlflow-governance"}


def test_the_rendered_kustomization_validates_too() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered")
    done = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert sorted(doc["kind"] for doc in rendered) == sorted(
        doc["kind"]
        for name, doc in ((n, load(n)) for n in manifest_files())
        if name != SECRET_EXAMPLE
    )
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "mlflow"
        if doc["kind"] in ("Deployment", "Job"):
            assert container(doc)["image"].startswith("registry.example.com/"), doc["kind"]


# ---------------------------------------------------------------------- the server


def test_two_replicas_probed_on_health_with_resources() -> None:
    deployment = by_kind()["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    server = container(deployment)
    port_names = {port["name"] for port in server["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = server[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert check["port"] in port_names, probe
    for kind in ("requests", "limits"):
        assert set(server["resources"][kind]) == {"cpu", "memory"}, kind


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_as_non_root_with_nothing_to_escalate(kind: str) -> None:
    workload = by_kind()[kind]
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    context = container(workload)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp (the bootstrap's lock file, caches).
    mounts = {m["mountPath"] for m in container(workload)["volumeMounts"]}
    assert "/tmp" in mounts


def test_the_server_command_is_mlflow_server_with_the_governance_app() -> None:
    from mlflow.cli import server as server_command

    server = container(by_kind()["Deployment"])
    assert server["command"] == ["mlflow"] and server["args"][0] == "server"
    params = server_command.make_context("server", list(server["args"][1:])).params
    assert params["app_name"] == "governance"
    assert params["registry_store_uri"] == f"governed+{params['backend_store_uri']}"
    assert params["backend_store_uri"] == "$(MLFLOW_DATABASE_URL)"
    assert int(params["workers"]) == 2
    served = {port["containerPort"] for port in server["ports"]}
    assert served == {int(params["port"])}
    assert params["host"] == "0.0.0.0"


def test_the_job_migrates_the_database_the_server_serves() -> None:
    from mlflow_governance.cli import main

    kinds = by_kind()
    job = container(kinds["Job"])
    assert job["command"] == ["mlflow-governance"]
    args = list(job["args"])
    assert args[:2] == ["db", "upgrade"]
    db_group = main.get_command(main.make_context("mlflow-governance", ["db"]), "db")
    upgrade = db_group.get_command(None, "upgrade")  # type: ignore[union-attr, arg-type]
    params = upgrade.make_context("upgrade", args[2:]).params
    assert params["registry_uri"] == "governed+$(MLFLOW_DATABASE_URL)"
    server_env, job_env = env_of(container(kinds["Deployment"])), env_of(job)
    assert server_env["MLFLOW_DATABASE_URL"] == job_env["MLFLOW_DATABASE_URL"]
    assert kinds["Job"]["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_the_settings_are_the_ones_the_product_reads() -> None:
    kinds = by_kind()
    server = container(kinds["Deployment"])
    env = env_of(server)
    assert "secretKeyRef" in env[ENV_SECRET_KEY]  # a secret, never a literal
    assert "secretKeyRef" in env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert float(env[ENV_POLICY_REFRESH]) > 0
    assert env[ENV_PUBLIC_URL].startswith("https://")
    assert env[ENV_DISPATCHER] in ("true", "false")

    # The policy file is the ConfigMap's key, mounted where MLFLOW_GOVERNANCE_POLICY says.
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    (policy_volume,) = [n for n, v in volumes.items() if "configMap" in v]
    assert volumes[policy_volume]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    directory, _, key = env[ENV_POLICY].rpartition("/")
    assert directory == mounts[policy_volume]
    assert key in kinds["ConfigMap"]["data"]
    (auth_volume,) = [n for n, v in volumes.items() if "secret" in v]
    directory, _, key = env["MLFLOW_AUTH_CONFIG_PATH"].rpartition("/")
    assert directory == mounts[auth_volume]
    assert key in {item["path"] for item in volumes[auth_volume]["secret"]["items"]}


def test_every_secret_key_read_is_in_the_example_secret() -> None:
    kinds = by_kind()
    secret = kinds["Secret"]
    keys = {(secret["metadata"]["name"], key) for key in secret["stringData"]}
    read = secret_refs(kinds["Deployment"]) | secret_refs(kinds["Job"])
    assert read <= keys, read - keys
    ini = secret["stringData"]["basic_auth.ini"]
    assert "auth_cache_ttl_seconds" in ini  # without it every request hashes a password


def test_the_policy_in_the_configmap_is_the_team_example_and_loads() -> None:
    text = by_kind()["ConfigMap"]["data"]["policy.yaml"]
    assert text == (ROOT / "examples" / "policies" / "team.yaml").read_text(encoding="utf-8")
    policy = load_policy_text(text, "configmap.yaml")
    assert policy.mode == "enforce"


def test_service_and_budget_select_the_server_pods() -> None:
    kinds = by_kind()
    pod_labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert {port["targetPort"] for port in service["ports"]} <= {
        port["name"] for port in container(kinds["Deployment"])["ports"]
    }
    budget = kinds["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["minAvailable"] < kinds["Deployment"]["spec"]["replicas"]


def test_the_deployment_doc_lists_every_file() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in [*manifest_files(), KUSTOMIZATION]:
        assert f"`{name}`" in text, name
