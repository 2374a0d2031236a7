"""The manifests themselves: deterministic, valid for Kubernetes, named safely, exact.

Validity is checked twice: against the Kubernetes API's own OpenAPI schemas
(kubernetes-validate, strict: no field Kubernetes does not know), and against the naming
rules the API server enforces but the schemas do not state (DNS-1035 names, label keys
and values), restated here from the Kubernetes documentation rather than imported from
the code under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_governance.gitops import FILES, Release, render, write_files, write_manifests

kubernetes_validate = pytest.importorskip("kubernetes_validate")

#: The newest Kubernetes release whose schemas kubernetes-validate ships.
K8S_VERSION = kubernetes_validate.utils.latest_version()

# https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

HOSTILE_NAMES = [
    "fraud",
    "Fraud Détection Model",
    "x" * 300,
    "Ünïcödé " * 40,
    "日本語のモデル",
    "  spaces  everywhere  ",
    "UPPER_CASE.with.dots_and_underscores",
    "-._leading and trailing_.-",
    "123-starts-with-digits",
    "emoji 🚀 model",
    "a",
]


def release(model: str = "fraud", **changes: Any) -> Release:
    fields: dict[str, Any] = {
        "model": model,
        "version": 7,
        "target": "@champion",
        "request_id": 42,
        "approvers": ("erin", "dave"),
        "image": "registry.example/fraud-serving:1.2.3",
    }
    fields.update(changes)
    return Release(**fields)


def docs(rel: Release) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in render(rel).items()}


def assert_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert LABEL_NAME.match(name), key
    if prefix:
        assert len(prefix) <= 253 and DNS_1123_SUBDOMAIN.match(prefix), key


def assert_labels_valid(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        assert_label_key(key)
        assert isinstance(value, str) and LABEL_VALUE.match(value), (key, value)


# ---------------------------------------------------------------------- determinism


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    first = write_manifests(release(), tmp_path / "a")
    second = write_manifests(release(approvers=("dave", "erin", "dave")), tmp_path / "b")
    assert [p.name for p in first] == list(FILES) == [p.name for p in second]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes()
    # And once more, in a fresh interpreter with another hash seed: no set or dict order
    # of the process leaks into the bytes.
    code = (
        "import sys, json; from mlflow_governance.gitops import Release, render; "
        "r = Release('fraud', 7, '@champion', 42, ('erin', 'dave'), "
        "'registry.example/fraud-serving:1.2.3'); sys.stdout.write(json.dumps(render(r)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    assert json.loads(out) == {p.name: p.read_text(encoding="utf-8") for p in first}


def test_no_anchors_timestamps_or_crlf() -> None:
    for text in render(release("Fraud Détection Model")).values():
        assert "&id" not in text and "*id" not in text
        assert "\r" not in text
        assert "Z\n" not in text  # no time of rendering anywhere


def test_only_fixed_file_names_are_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Not a manifest file name"):
        write_files({"../../etc/passwd": "x"}, tmp_path)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------- validity


@pytest.mark.parametrize("model", HOSTILE_NAMES)
@pytest.mark.parametrize("target", ["@champion", "Production", "@Chäm pion"])
def test_manifests_validate_against_the_kubernetes_schemas(model: str, target: str) -> None:
    rendered = docs(release(model, target=target, namespace="ml-serving"))
    for name in ("deployment.yaml", "service.yaml"):
        kubernetes_validate.validate(rendered[name], K8S_VERSION, strict=True)


@pytest.mark.parametrize("model", HOSTILE_NAMES)
def test_names_and_labels_of_hostile_model_names_are_valid(model: str) -> None:
    rendered = docs(release(model))
    deployment, service = rendered["deployment.yaml"], rendered["service.yaml"]
    for doc in (deployment, service):
        assert DNS_1035_LABEL.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert_labels_valid(doc["metadata"]["labels"])
        for key in doc["metadata"]["annotations"]:
            assert_label_key(key)
    template = deployment["spec"]["template"]["metadata"]
    assert_labels_valid(template["labels"])
    assert_labels_valid(deployment["spec"]["selector"]["matchLabels"])
    # The selector picks the template's pods, and the Service the same pods.
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["labels"].items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The exact name survives in the annotations, where labels had to give it up.
    assert deployment["metadata"]["annotations"]["mlflow-governance/model"] == model


def test_names_are_distinct_where_models_or_targets_differ() -> None:
    names = {release(model, target=t).name for model in HOSTILE_NAMES for t in ("@a", "@b")}
    assert len(names) == 2 * len(HOSTILE_NAMES)
    # Case alone makes two MLflow models; it makes two Deployments too.
    assert release("Fraud").name != release("fraud").name
    assert release("x" * 300).name != release("x" * 299).name


def test_names_stay_stable_across_versions() -> None:
    # Argo CD must update one Deployment when the version moves, not create another.
    one, two = docs(release(version=1)), docs(release(version=2))
    for name in ("deployment.yaml", "service.yaml"):
        assert one[name]["metadata"]["name"] == two[name]["metadata"]["name"]
    assert one["deployment.yaml"]["spec"]["selector"] == two["deployment.yaml"]["spec"]["selector"]


def test_a_valid_name_is_kept_readable() -> None:
    assert release("fraud").name == "mlflow-fraud-champion"
    assert release("fraud", target="Production").name.startswith("mlflow-fraud-production-")


# ---------------------------------------------------------------------- content


def test_the_server_loads_the_exact_version_never_an_alias() -> None:
    rendered = docs(release("Fraud Détection Model", version=7, target="@champion"))
    container = rendered["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "models", "serve"]
    args = container["args"]
    assert args[args.index("-m") + 1] == "models:/Fraud Détection Model/7"
    assert args[args.index("--env-manager") + 1] == "local"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8080"
    text = "".join(render(release(target="@champion")).values())
    assert "models:/fraud@champion" not in text and "models:/fraud/champion" not in text
    assert container["image"] == "registry.example/fraud-serving:1.2.3"


def test_provenance_annotations_and_labels() -> None:
    meta = docs(release())["deployment.yaml"]["metadata"]
    assert meta["annotations"] == {
        "mlflow-governance/approvers": '["dave", "erin"]',
        "mlflow-governance/model": "fraud",
        "mlflow-governance/model-uri": "models:/fraud/7",
        "mlflow-governance/request-id": "42",
        "mlflow-governance/target": "@champion",
        "mlflow-governance/version": "7",
    }
    assert meta["labels"]["mlflow-governance/version"] == "7"
    assert meta["labels"]["mlflow-governance/model"] == "fraud"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "mlflow-governance"
    without = docs(release(request_id=None, approvers=()))["deployment.yaml"]["metadata"]
    assert "mlflow-governance/request-id" not in without["annotations"]
    assert "mlflow-governance/approvers" not in without["annotations"]


def test_tracking_uri_comes_from_a_secret_and_probes_hit_the_scoring_server() -> None:
    rendered = docs(release(tracking_secret="prod-tracking"))
    container = rendered["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert "value" not in env["MLFLOW_TRACKING_URI"]
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "prod-tracking",
        "key": "tracking-uri",
    }
    assert all("value" not in item for item in container["env"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] in ("/ping", "/health")
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}


def test_service_and_kustomization() -> None:
    rendered = docs(release(namespace="ml-serving", port=9000))
    service = rendered["service.yaml"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "protocol": "TCP", "targetPort": "http"}
    ]
    kustomization = rendered["kustomization.yaml"]
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == ["deployment.yaml", "service.yaml"]
    assert kustomization["namespace"] == "ml-serving"
    (common,) = kustomization["labels"]
    assert common["includeSelectors"] is False
    assert common["pairs"]["app.kubernetes.io/part-of"] == "mlflow-governance"
    assert_labels_valid(common["pairs"])
    assert "namespace" not in docs(release())["kustomization.yaml"]


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("port", 70000), ("replicas", -1)])
def test_impossible_settings_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        release(**{field: value})


def test_render_is_pure() -> None:
    code = (
        "import sys; import mlflow_governance.gitops.render; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'flask', 'sqlalchemy')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_documented_example_is_what_renders() -> None:
    text = (Path(__file__).parents[2] / "docs" / "gitops.md").read_text(encoding="utf-8")
    example = Release(
        "fraud",
        7,
        "@champion",
        42,
        ("dave", "erin"),
        "registry.example.com/ml/fraud-serving:2026-11-27",
    )
    for name, rendered in render(example).items():
        if name != "service.yaml":  # the page shows the other two
            assert f"```yaml\n{rendered}```" in text, name
