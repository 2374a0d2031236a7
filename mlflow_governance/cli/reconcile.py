"""``audit reconcile``: the registry's current state against what the audit log says."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mlflow_governance.cli._common import (
    EXIT_FAILED,
    connect,
    connection_options,
    emit,
    errors,
    json_option,
    table,
)

_COLUMNS = ("kind", "model", "target", "expected", "actual")


def _row(difference: dict[str, Any]) -> dict[str, Any]:
    """A difference as a table row: the object in one column, the audit row beside the
    value it set."""
    if difference.get("alias") is not None:
        target = f"@{difference['alias']}"
    elif difference.get("version") is not None:
        target = f"version {difference['version']}"
    else:
        target = "(model)"
    expected = difference.get("expected")
    if expected is not None and difference.get("expected_row") is not None:
        expected = f"{expected} (audit row {difference['expected_row']})"
    workspace = difference.get("workspace")
    model = str(difference.get("model"))
    actual = difference.get("actual")
    return {
        "kind": difference.get("kind"),
        "model": model if workspace in (None, "default") else f"{workspace}/{model}",
        "target": target,
        "expected": "(not in the log)" if expected is None else expected,
        "actual": _contents(actual) if isinstance(actual, dict) else actual or "(absent)",
    }


def _contents(actual: dict[str, Any]) -> str:
    """What a model the log never saw holds, e.g. ``exists; versions 1, 2; @champion 2``."""
    parts = ["exists" if actual.get("exists") else "no model row"]
    versions = actual.get("versions") or []
    if versions:
        parts.append("versions " + ", ".join(str(v) for v in versions))
    parts.extend(f"@{alias} {version}" for alias, version in (actual.get("aliases") or {}).items())
    return "; ".join(parts)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _baseline(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{path} is not JSON ({exc}); pass a file written by "
            "'mlflow-governance audit reconcile --json'",
            param_hint="--baseline",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("differences"), list):
        raise click.BadParameter(
            f"{path} has no 'differences' list; pass a file written by "
            "'mlflow-governance audit reconcile --json'",
            param_hint="--baseline",
        )
    return data


@click.command("reconcile")
@connection_options
@click.option(
    "--baseline",
    "baseline_file",
    type=click.Path(exists=True, dir_okay=False),
    help="An earlier 'audit reconcile --json' report, reviewed: the differences it lists "
    "(e.g. models older than the plugin) are accepted, not reported again.",
)
@json_option
def reconcile(
    registry_uri: str | None, tracking_uri: str | None, baseline_file: str | None, as_json: bool
) -> None:
    """Compare the registry with what the audit log says it should be (needs audit:read).

    Exit 0 when every model, version, stage and alias is what the log says, 1 listing
    each difference (e.g. a change made directly in the database).
    """
    from mlflow_governance.audit.reconcile import accept

    baseline = _baseline(baseline_file) if baseline_file else None
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.audit_reconcile()
    if baseline is not None:
        data = accept(data, baseline)
    counts = (
        f"{_count(data['rows'], 'audit row')} replayed; {_count(data['models'], 'model')}, "
        f"{_count(data['versions'], 'version')}, {_count(data['aliases'], 'alias', 'aliases')}"
    )
    accepted = f", {data['accepted']} accepted by the baseline" if data.get("accepted") else ""
    if data["ok"]:
        emit(data, as_json, text=f"OK: the registry matches the audit log ({counts}{accepted}).")
        return
    found = _count(len(data["differences"]), "difference")
    rows = table([_row(d) for d in data["differences"]], _COLUMNS)
    emit(
        data,
        as_json,
        text=f"{found} between the registry and the audit log ({counts}{accepted}):\n{rows}",
    )
    sys.exit(EXIT_FAILED)
