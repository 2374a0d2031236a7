"""Options, the connection to the governance service, errors and output of every command."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mlflow_governance.access import Access

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes (docs/cli.md lists them).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_TIMEOUT = 4
EXIT_UNREACHABLE = 5


def connection_options(func: F) -> F:
    """``--registry-uri`` (local mode) and ``--tracking-uri`` (the governance server)."""
    func = click.option(
        "--tracking-uri",
        metavar="URL",
        help="The governance server, e.g. http://mlflow.example:5000 (recommended) "
        "[env: MLFLOW_TRACKING_URI].",
    )(func)
    return click.option(
        "--registry-uri",
        metavar="URI",
        help="Local mode: a governed registry, e.g. governed+sqlite:///registry.db "
        "[env: MLFLOW_REGISTRY_URI].",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output (an array for lists, an object for one item)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def error_line(message: str) -> None:
    """Print ``Error: message`` to standard error, in red on a terminal."""
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(Text(f"Error: {message}", style="bold red"))


@contextmanager
def errors(code: int = EXIT_FAILED) -> Iterator[None]:
    """Print plugin errors as one line and exit with their code.

    A server that cannot be reached exits with its own code (5), a wait that ran out of
    time with 4, everything else with ``code``.
    """
    from mlflow.exceptions import MlflowException

    from mlflow_governance.exceptions import GovernanceError, TimedOut, Unreachable

    try:
        yield
    except Unreachable as exc:
        error_line(exc.message)
        sys.exit(EXIT_UNREACHABLE)
    except TimedOut as exc:
        error_line(exc.message)
        sys.exit(EXIT_TIMEOUT)
    except (GovernanceError, MlflowException) as exc:
        error_line(exc.message)
        sys.exit(code)


def connect(
    registry_uri: str | None, tracking_uri: str | None, code: int = 1, *, notice: bool = True
) -> Access:
    """Reach the governance service the options (or environment) name.

    In local mode a warning of this process (a policy file that differs from the applied
    policy) is printed once, to standard error, unless ``notice`` is false (a command that
    says it better itself).
    """
    from mlflow_governance.access import connect as open_access
    from mlflow_governance.access import resolve_uri

    with errors(EXIT_USAGE):  # nothing configured, or a URI of neither kind
        resolve_uri(registry_uri, tracking_uri)
    with errors(code):
        access = open_access(registry_uri, tracking_uri)
        warning = access.notice() if notice else None
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    return access


def local_only(access: Access, command: str) -> None:
    """Refuse a command that works on the database itself when the URI is a server."""
    if access.remote:
        error_line(
            f"'{command}' works on the database itself: run it where the database is "
            "reachable, with --registry-uri governed+<database URL>."
        )
        sys.exit(EXIT_USAGE)


def parse_time(value: str | None, flag: str) -> str | None:
    """Check an ISO-8601 time early (the service parses it again); return it as given."""
    from mlflow_governance.audit.chain import parse_time as parse_iso

    if value is None:
        return None
    try:
        parse_iso(value)
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time; e.g. 2026-11-01T12:00:00Z or 2026-11-01",
            param_hint=flag,
        ) from None
    return value


def emit(data: Any, as_json: bool, *, text: str | None = None) -> None:
    """Print one result as JSON or as text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        click.echo(text if text is not None else json.dumps(data, indent=2, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Render rows as a table; long cells wrap to the terminal's width, never cut.

    Off a terminal (a pipe, a CI log), every row stays on one line.
    """
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return "(no rows)"
    grid = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column.upper(), overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(row.get(column)) for column in columns))
    buffer = io.StringIO()
    terminal = sys.stdout.isatty()
    width = None if terminal else 100_000
    Console(
        file=buffer, width=width, color_system=None, highlight=False, soft_wrap=not terminal
    ).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def comment_option(func: F) -> F:
    """``--comment``/``-m``: why, kept with the request."""
    return click.option("--comment", "-m", help="Why (kept with the request).")(func)


def review_line(data: dict[str, Any]) -> str:
    review = data.get("review_request")
    if not review:
        return ""
    return (
        f"\nBreak glass: review request #{review['id']} is open until approvers approve it "
        f"(mlflow-governance requests --model {review['model']})."
    )
