"""Options, store access and output shared by every command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mlflow_governance.store import GovernedStore

F = TypeVar("F", bound=Callable[..., Any])


def registry_option(func: F) -> F:
    """``--registry-uri``, defaulting to ``MLFLOW_REGISTRY_URI``."""
    return click.option(
        "--registry-uri",
        envvar="MLFLOW_REGISTRY_URI",
        required=True,
        metavar="URI",
        help="Governed registry URI, e.g. governed+sqlite:///registry.db "
        "[env: MLFLOW_REGISTRY_URI].",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output (an array for lists, an object for one item)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def open_store(registry_uri: str) -> GovernedStore:
    """Build the governed store for a URI, turning configuration errors into CLI errors."""
    from mlflow.exceptions import MlflowException

    from mlflow_governance.entry import build_store

    try:
        return build_store(registry_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    except MlflowException as exc:
        raise click.ClickException(exc.message) from None


def parse_time(value: str | None, flag: str) -> datetime | None:
    """Parse an ISO-8601 time (``Z`` or an offset allowed; naive means UTC)."""
    from mlflow_governance.audit.chain import parse_time as parse_iso

    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time; e.g. 2026-11-01T12:00:00Z or 2026-11-01",
            param_hint=flag,
        ) from None


def emit(data: Any, as_json: bool, *, text: str | None = None) -> None:
    """Print one result as JSON or as text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        click.echo(text if text is not None else json.dumps(data, indent=2, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Render rows as a plain fixed-width table."""
    if not rows:
        return "(no rows)"
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(message: str, code: int = 1) -> None:
    """Print to stderr and exit with ``code``."""
    click.echo(message, err=True)
    sys.exit(code)
