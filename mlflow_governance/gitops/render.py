"""Kubernetes manifests for a released model version, as deterministic YAML text.

Pure: no MLflow, no Flask, no database. The application layer resolves a stage or alias to
a version and finds the request that put it there; this module turns that
:class:`Release` into ``deployment.yaml``, ``service.yaml`` and ``kustomization.yaml``.
The same release always renders to the same bytes (keys sorted, no timestamps), so a
GitOps repository only sees a diff when the release itself changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Where the default image comes from: MLflow's own, tagged with the MLflow version.
DEFAULT_IMAGE_REPOSITORY = "ghcr.io/mlflow/mlflow"
#: The Secret the pods read the tracking server's address (and credentials) from.
DEFAULT_TRACKING_SECRET = "mlflow-tracking"

DEPLOYMENT_FILE = "deployment.yaml"
SERVICE_FILE = "service.yaml"
KUSTOMIZATION_FILE = "kustomization.yaml"
#: The file names, in the order they are written.
FILES = (DEPLOYMENT_FILE, SERVICE_FILE, KUSTOMIZATION_FILE)

PART_OF = "mlflow-governance"
#: Prefix of our own label and annotation keys (a DNS label is a valid key prefix).
KEY_PREFIX = "mlflow-governance"

#: Kubernetes limits: object names that are DNS-1035 labels (a Service's) and label values.
MAX_NAME = 63
MAX_LABEL_VALUE = 63
_HASH_LENGTH = 8

_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9._-]+")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([a-z0-9]([-a-z0-9_.]*[a-z0-9])?)?$")


def default_image(mlflow_version: str) -> str:
    """MLflow's published image for an MLflow version, e.g. ``ghcr.io/mlflow/mlflow:v3.17.2``."""
    return f"{DEFAULT_IMAGE_REPOSITORY}:v{mlflow_version}"


def model_uri(model: str, version: int) -> str:
    """The immutable ``models:/`` URI of one version (never a stage or alias URI)."""
    return f"models:/{model}/{version}"


def _short_hash(*parts: str) -> str:
    # NUL cannot occur in a model name or target, so distinct tuples hash apart.
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def _ascii_lower(text: str) -> str:
    """Lowercase ASCII where Unicode allows (``Détection`` -> ``detection``) so slugs stay
    readable; what has no ASCII form becomes a separator later."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _fit(slug: str, suffix: str, limit: int) -> str:
    """``slug`` cut so that ``slug-suffix`` fits ``limit``, without a separator at the cut."""
    room = limit - len(suffix) - 1
    head = slug[:room].rstrip("-._")
    return f"{head}-{suffix}" if head else suffix


def label_value(text: str) -> str:
    """``text`` as a valid Kubernetes label value, stable and distinct per input.

    Text that already is a valid label value is kept as it is; anything else is
    lowercased, its invalid characters replaced with ``-``, trimmed to start and end
    alphanumeric, and given a short hash of the original so that ``Fraud`` and ``fraud``
    (or two long names that share 63 characters) do not collide.
    """
    if len(text) <= MAX_LABEL_VALUE and _LABEL_VALUE.match(text):
        return text
    slug = _NOT_LABEL_CHARS.sub("-", _ascii_lower(text)).strip("-._")
    slug = re.sub(r"-{2,}", "-", slug)
    return _fit(slug, _short_hash(text), MAX_LABEL_VALUE)


def object_name(prefix: str, model: str, target: str) -> str:
    """A DNS-1035 label naming the Deployment and Service of one model's target.

    Stable across versions (ArgoCD updates the same Deployment when the version moves),
    distinct per target (``@champion`` and ``@challenger`` run side by side).

    Args:
        prefix: E.g. ``mlflow-``; it also guarantees a leading letter.
        model: The registered model name, as stored.
        target: ``Production`` or ``@champion``.
    """
    wanted = f"{prefix}{model}-{target.lstrip('@')}"
    if len(wanted) <= MAX_NAME and _NAME.match(wanted):
        return wanted
    slug = _NOT_NAME_CHARS.sub("-", _ascii_lower(wanted)).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    if slug and not slug[0].isalpha():
        slug = f"m-{slug}"
    return _fit(slug or "m", _short_hash(prefix, model, target), MAX_NAME)


@dataclass(frozen=True)
class Release:
    """One model version released to a stage or alias, and how to run it.

    Attributes:
        model: The registered model name, exactly as stored.
        version: The resolved version number (the manifests never name an alias).
        target: ``Production`` or ``@champion``.
        request_id: The applied promotion request that put it there, if any.
        approvers: Who approved that request, sorted.
        image: The container image that has ``mlflow`` and the model's dependencies.
        port: The port ``mlflow models serve`` listens on.
        replicas: Pods to run.
        namespace: The namespace, or None to leave it to the Argo CD application.
        name_prefix: Prefix of the object names.
        tracking_secret: The Secret holding ``MLFLOW_TRACKING_URI`` (key ``tracking-uri``)
            and optionally ``username``, ``password`` and ``token``.
        cpu: CPU request of the container.
        memory: Memory request of the container.

    Raises:
        ValueError: A port outside 1-65535 or a negative number of replicas.
    """

    model: str
    version: int
    target: str
    request_id: int | None
    approvers: tuple[str, ...]
    image: str
    port: int = 8080
    replicas: int = 1
    namespace: str | None = None
    name_prefix: str = "mlflow-"
    tracking_secret: str = DEFAULT_TRACKING_SECRET
    cpu: str = "250m"
    memory: str = "512Mi"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port={self.port} is not a TCP port (1 to 65535).")
        if self.replicas < 0:
            raise ValueError(f"replicas={self.replicas} cannot be negative.")
        # Sorted and unique whatever the caller passed: the bytes must not depend on
        # the order votes were read in.
        object.__setattr__(self, "approvers", tuple(sorted(set(self.approvers))))

    @property
    def name(self) -> str:
        """The Deployment's and Service's name."""
        return object_name(self.name_prefix, self.model, self.target)

    @property
    def uri(self) -> str:
        """The model URI the server loads."""
        return model_uri(self.model, self.version)


def _selector(release: Release) -> dict[str, str]:
    # The selector of a Deployment cannot change after creation, so it names the
    # model's target only: a new version must update the Deployment, not replace it.
    return {"app.kubernetes.io/instance": release.name, "app.kubernetes.io/name": "mlflow-model"}


def _labels(release: Release) -> dict[str, str]:
    return {
        **_selector(release),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/version": str(release.version),
        f"{KEY_PREFIX}/model": label_value(release.model),
        f"{KEY_PREFIX}/target": label_value(release.target.lstrip("@")),
        f"{KEY_PREFIX}/version": str(release.version),
    }


def _annotations(release: Release) -> dict[str, str]:
    """The exact provenance (labels are lossy); absent keys mean no request."""
    notes = {
        f"{KEY_PREFIX}/model": release.model,
        f"{KEY_PREFIX}/model-uri": release.uri,
        f"{KEY_PREFIX}/target": release.target,
        f"{KEY_PREFIX}/version": str(release.version),
    }
    if release.request_id is not None:
        notes[f"{KEY_PREFIX}/request-id"] = str(release.request_id)
    if release.approvers:
        # JSON keeps names with commas or spaces (e-mail addresses, display names) apart.
        notes[f"{KEY_PREFIX}/approvers"] = json.dumps(list(release.approvers))
    return notes


def _metadata(release: Release) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": release.name,
        "labels": _labels(release),
        "annotations": _annotations(release),
    }
    if release.namespace:
        meta["namespace"] = release.namespace
    return meta


def _secret_env(name: str, secret: str, key: str, *, optional: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def deployment(release: Release) -> dict[str, Any]:
    """The Deployment running ``mlflow models serve`` on the release's version."""
    container = {
        "name": "model",
        "image": release.image,
        "command": ["mlflow", "models", "serve"],
        "args": [
            "-m",
            release.uri,
            "--host",
            "0.0.0.0",
            "--port",
            str(release.port),
            # The image carries the model's dependencies; no conda or virtualenv at start.
            "--env-manager",
            "local",
        ],
        "ports": [{"name": "http", "containerPort": release.port, "protocol": "TCP"}],
        # From a Secret, never a literal: the URI may carry credentials.
        "env": [
            _secret_env(
                "MLFLOW_TRACKING_URI", release.tracking_secret, "tracking-uri", optional=False
            ),
            _secret_env(
                "MLFLOW_TRACKING_USERNAME", release.tracking_secret, "username", optional=True
            ),
            _secret_env(
                "MLFLOW_TRACKING_PASSWORD", release.tracking_secret, "password", optional=True
            ),
            _secret_env("MLFLOW_TRACKING_TOKEN", release.tracking_secret, "token", optional=True),
        ],
        # Downloading and loading a model can take minutes: the startup probe holds the
        # liveness probe back until /ping first answers, instead of a guessed delay.
        "startupProbe": _probe("/ping", period=10, failures=60),
        "readinessProbe": _probe("/ping", period=10, failures=3),
        "livenessProbe": _probe("/health", period=20, failures=3),
        "resources": {"requests": {"cpu": release.cpu, "memory": release.memory}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    meta = _metadata(release)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": release.replicas,
            "selector": {"matchLabels": _selector(release)},
            "template": {
                "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                "spec": {"containers": [container]},
            },
        },
    }


def service(release: Release) -> dict[str, Any]:
    """A ClusterIP Service in front of the Deployment's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(release),
            "ports": [
                {"name": "http", "port": release.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def kustomization(release: Release) -> dict[str, Any]:
    """The kustomization listing both manifests, with the labels common to both."""
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [DEPLOYMENT_FILE, SERVICE_FILE],
        # Not into selectors: a selector change would make the Deployment unpatchable.
        "labels": [
            {
                "pairs": {
                    "app.kubernetes.io/managed-by": PART_OF,
                    "app.kubernetes.io/part-of": PART_OF,
                },
                "includeSelectors": False,
            }
        ],
    }
    if release.namespace:
        doc["namespace"] = release.namespace
    return doc


class _Dumper(yaml.SafeDumper):
    """Never writes anchors (``&id001``): a shared dict is written out again in full, as
    people and ``kubectl diff`` expect to read it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(document: Mapping[str, Any]) -> str:
    """YAML text with fixed options, so equal documents give equal bytes."""
    return yaml.dump(
        dict(document),
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,  # no folding inside long model names or approver lists
        indent=2,
    )


def render(release: Release) -> dict[str, str]:
    """The manifests of a release: file name -> YAML text."""
    return {
        DEPLOYMENT_FILE: dump(deployment(release)),
        SERVICE_FILE: dump(service(release)),
        KUSTOMIZATION_FILE: dump(kustomization(release)),
    }


def write_files(files: Mapping[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered files into ``out_dir`` (created if missing) as UTF-8 with LF endings.

    Only the fixed file names are accepted, so text from a server cannot write elsewhere.

    Raises:
        ValueError: A file name that is not one of :data:`FILES`.
    """
    unknown = sorted(set(files) - set(FILES))
    if unknown:
        raise ValueError(f"Not a manifest file name: {', '.join(unknown)} (expected {FILES}).")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        if name in files:
            path = folder / name
            # newline="\n": the same bytes on Windows, or Git sees a change of every line.
            with path.open("w", encoding="utf-8", newline="\n") as handle:
                handle.write(files[name])
            written.append(path)
    return written


def write_manifests(release: Release, out_dir: str | Path) -> list[Path]:
    """Render a release and write its manifests into ``out_dir``.

    Returns:
        The paths written, in the order of :data:`FILES`.
    """
    return write_files(render(release), out_dir)
