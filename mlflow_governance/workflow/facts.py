"""What a gate's checks look at: a version's metrics, tags, signature and stage.

Metrics come from the version's MLflow 3 logged model when it has one, else from its
source run, read through the tracking store of the tracking URI MLflow resolved. Only
what the gate asks for is fetched: a gate without metric checks costs no tracking call,
and a run is looked up for its user only when a gate asks who logged a metric.

Each metric's origin is recorded with its value: the time MLflow stored with the value
that is checked, and, since MLflow records no author per metric, the ``user_id`` of the
run that logged it. Both are what the logging client said; the policy docs spell out
what that does and does not prove.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from mlflow_governance.policy import Gate, MetricOrigin, VersionFacts

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
        ``metric_origins`` holds, for each metric found, when its checked value was logged
        and, for the metrics a gate checks with ``not_by_requester``, by whom.
    """
    wants_metrics = any(gate.checks.metrics for gate in gates)
    wants_signature = any(gate.checks.signature_required for gate in gates)
    loggers_for = frozenset(
        name
        for gate in gates
        for name, wanted in gate.checks.metric_provenance.items()
        if wanted.not_by_requester
    )
    metrics: dict[str, float] = {}
    origins: dict[str, MetricOrigin] = {}
    if wants_metrics:
        metrics, origins = _metrics(mv, tracking_uri, loggers_for)
    signature = _has_signature(artifact_uri or mv.source) if wants_signature else False
    return VersionFacts(
        metrics=metrics,
        tags=dict(mv.tags or {}),
        has_signature=signature,
        current_stage=mv.current_stage or "None",
        metric_origins=origins,
    )


def _metrics(
    mv: Any, tracking_uri: str | None, loggers_for: frozenset[str]
) -> tuple[dict[str, float], dict[str, MetricOrigin]]:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found: dict[str, float] = {}
    origins: dict[str, MetricOrigin] = {}
    users = _RunUsers(client)
    if getattr(mv, "model_id", None):
        try:
            logged = client.get_logged_model(mv.model_id)
        except MlflowException as exc:
            _logger.info("No logged model %s for gate checks: %s", mv.model_id, exc.message)
        else:
            # A logged model keeps every value logged for a metric (per step, dataset and
            # run); the newest one is the one checked, and its time is the one reported.
            newest: dict[str, Any] = {}
            for metric in logged.metrics or []:
                kept = newest.get(metric.key)
                if kept is None or _order(metric) > _order(kept):
                    newest[metric.key] = metric
            for key, metric in newest.items():
                found[key] = float(metric.value)
                logger = None
                if key in loggers_for:
                    logger = users.of(metric.run_id or getattr(logged, "source_run_id", None))
                origins[key] = MetricOrigin(_from_millis(metric.timestamp), logger)
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except MlflowException as exc:
            _logger.info("No run %s for gate checks: %s", mv.run_id, exc.message)
        else:
            user = run.info.user_id or None
            # ``run.data.metrics`` holds MLflow's latest value per key; the proto form of
            # the same data carries each of those values with its timestamp.
            for metric in run.data.to_proto().metrics:
                if metric.key in found:
                    continue
                found[metric.key] = float(metric.value)
                logger = user if metric.key in loggers_for else None
                origins[metric.key] = MetricOrigin(_from_millis(metric.timestamp), logger)
    return found, origins


class _RunUsers:
    """The ``user_id`` of runs, each looked up once."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._users: dict[str, str | None] = {}

    def of(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        if run_id not in self._users:
            from mlflow.exceptions import MlflowException

            try:
                self._users[run_id] = self._client.get_run(run_id).info.user_id or None
            except MlflowException as exc:
                # An unknown author fails a not_by_requester check, as it should.
                _logger.info("No run %s to tell who logged a metric: %s", run_id, exc.message)
                self._users[run_id] = None
        return self._users[run_id]


def _order(metric: Any) -> tuple[int, int]:
    return (int(metric.timestamp or 0), int(metric.step or 0))


def _from_millis(millis: Any) -> datetime | None:
    """A metric's timestamp (ms since the epoch) as a naive UTC datetime, if it is one.

    The logging client chooses the timestamp; one far outside the calendar makes the time
    unknown (and a ``logged_before_request`` check fail) instead of an error.
    """
    try:
        moment = datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.replace(tzinfo=None)


def _has_signature(source: str) -> bool:
    from mlflow.models import get_model_info

    try:
        return get_model_info(source).signature is not None
    except Exception as exc:  # any unreadable artifact simply means "no signature"
        _logger.info("Could not read the model at %s for a signature check: %s", source, exc)
        return False
