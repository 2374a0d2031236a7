"""GitOps: a released model version as Kubernetes manifests to commit and let Argo CD sync.

:mod:`mlflow_governance.gitops.render` is pure (no MLflow, no Flask, no database); the
application layer's ``render_release`` resolves the stage or alias and the request
behind it, and ``mlflow-governance gitops render`` writes the files.
"""

from __future__ import annotations

from mlflow_governance.gitops.render import (
    FILES,
    Release,
    default_image,
    label_value,
    model_uri,
    object_name,
    render,
    write_files,
    write_manifests,
)

__all__ = [
    "FILES",
    "Release",
    "default_image",
    "label_value",
    "model_uri",
    "object_name",
    "render",
    "write_files",
    "write_manifests",
]
