"""What a gate's checks look at: a version's metrics, tags, signature and stage.

Metrics come from the version's MLflow 3 logged model when it has one, else from its
source run, read through the tracking store of the tracking URI MLflow resolved. Only
what the gate asks for is fetched: a gate without metric checks costs no tracking call.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow_governance.policy import Gate, VersionFacts

_logger = logging.getLogger(__name__)


def version_facts(
    mv: Any, gates: tuple[Gate, ...], tracking_uri: str | None, artifact_uri: str | None
) -> VersionFacts:
    """Collect the facts the given gates check about a model version.

    Args:
        mv: The MLflow ``ModelVersion`` entity.
        gates: The gates that will be evaluated.
        tracking_uri: Where the version's run or logged model lives.
        artifact_uri: Where the version's model files are (for the signature check).

    Returns:
        The facts; missing metrics are simply absent (the check reports them missing).
    """
    wants_metrics = any(gate.checks.metrics for gate in gates)
    wants_signature = any(gate.checks.signature_required for gate in gates)
    metrics = _metrics(mv, tracking_uri) if wants_metrics else {}
    signature = _has_signature(artifact_uri or mv.source) if wants_signature else False
    return VersionFacts(
        metrics=metrics,
        tags=dict(mv.tags or {}),
        has_signature=signature,
        current_stage=mv.current_stage or "None",
    )


def _metrics(mv: Any, tracking_uri: str | None) -> dict[str, float]:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found: dict[str, float] = {}
    if getattr(mv, "model_id", None):
        try:
            logged = client.get_logged_model(mv.model_id)
            for metric in logged.metrics or []:
                found.setdefault(metric.key, float(metric.value))
        except MlflowException as exc:
            _logger.info("No logged model %s for gate checks: %s", mv.model_id, exc.message)
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            for key, value in run.data.metrics.items():
                found.setdefault(key, float(value))
        except MlflowException as exc:
            _logger.info("No run %s for gate checks: %s", mv.run_id, exc.message)
    return found


def _has_signature(source: str) -> bool:
    from mlflow.models import get_model_info

    try:
        return get_model_info(source).signature is not None
    except Exception as exc:  # any unreadable artifact simply means "no signature"
        _logger.info("Could not read the model at %s for a signature check: %s", source, exc)
        return False
