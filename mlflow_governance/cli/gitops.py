"""``gitops render``: write the manifests of a released model version into a folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Protocol, cast

import click

from mlflow_governance.cli._common import (
    EXIT_FAILED,
    connect,
    connection_options,
    emit,
    error_line,
    errors,
    json_option,
)


class _Renders(Protocol):
    """What this command needs of the access (local or remote): the service's answer."""

    def gitops_render(
        self, model: str, *, alias: str | None, stage: str | None, image: str | None
    ) -> dict[str, Any]: ...


@click.group()
def gitops() -> None:
    """Kubernetes manifests of released versions, to commit for Argo CD (or Flux) to sync."""


def _summary(data: dict[str, Any]) -> str:
    if data.get("request_id") is None:
        why = "moved there without a promotion request"
    else:
        voices = ", ".join(data.get("approvers") or []) or "no approvers"
        why = f"request #{data['request_id']}, approved by {voices}"
    return (
        f"{data['model']} version {data['version']} holds {data['target']} ({why}); "
        f"image {data.get('image')}."
    )


@gitops.command("render")
@connection_options
@click.option("--model", required=True, help="The registered model.")
@click.option("--alias", help="Render the version this alias points at, e.g. champion.")
@click.option("--stage", help="Render the newest version in this stage, e.g. Production.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write deployment.yaml, service.yaml and kustomization.yaml into.",
)
@click.option(
    "--image",
    help="Container image with mlflow and the model's dependencies "
    "[default: the service's MLFLOW_GOVERNANCE_GITOPS_IMAGE, else MLflow's image].",
)
@json_option
def render(
    registry_uri: str | None,
    tracking_uri: str | None,
    model: str,
    alias: str | None,
    stage: str | None,
    out_dir: Path,
    image: str | None,
    as_json: bool,
) -> None:
    """Write the manifests that run the version a stage or alias of a model holds.

    The manifests name the resolved version (models:/MODEL/7), with the request and
    approvers behind it as annotations; commit the folder and let Argo CD sync it.
    """
    from mlflow_governance.gitops.render import write_files

    if (alias is None) == (stage is None):
        raise click.UsageError("give exactly one of --alias or --stage")
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = cast(_Renders, access).gitops_render(model, alias=alias, stage=stage, image=image)
    # Written here, not by the service: in remote mode the folder is on this machine.
    try:
        written = write_files(data["files"], out_dir)
    except (OSError, ValueError) as exc:
        error_line(f"Could not write the manifests into {out_dir}: {exc}")
        sys.exit(EXIT_FAILED)
    result = {**{k: v for k, v in data.items() if k != "files"}, "files": [str(p) for p in written]}
    lines = [f"Wrote {path}" for path in written]
    emit(result, as_json, text="\n".join([*lines, _summary(data)]))
