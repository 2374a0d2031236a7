"""``events``: deliver the outbox (``run``), look at it (``list``) and retry (``retry``)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from mlflow_governance.cli._common import (
    EXIT_USAGE,
    connect,
    connection_options,
    emit,
    errors,
    json_option,
    local_only,
    table,
)

_COLUMNS = ("id", "time", "type", "model", "version", "state", "attempts", "last_error")


@click.group()
def events() -> None:
    """Governance events: the outbox, its delivery, and retries."""


@events.command("run")
@connection_options
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds to wait when nothing is due.",
)
@click.option("--batch", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds a claim holds; a dispatcher that dies loses its claims then.",
)
@json_option
def events_run(
    registry_uri: str | None,
    tracking_uri: str | None,
    once: bool,
    interval: float,
    batch: int,
    max_attempts: int,
    lease: float,
    as_json: bool,
) -> None:
    """Deliver outbox events to the policy's notifications (local mode: needs the database).

    Several dispatchers may run on one PostgreSQL or MySQL database: they never deliver
    one event at the same time.
    """
    from mlflow_governance.access import LocalAccess
    from mlflow_governance.events.dispatcher import Dispatcher, policy_sinks

    access = connect(registry_uri, tracking_uri)
    local_only(access, "events run")
    assert isinstance(access, LocalAccess)
    store = access.store
    dispatcher = Dispatcher(
        store.engine,
        policy_sinks(store),
        batch=batch,
        max_attempts=max_attempts,
        lease=lease,
    )
    if once:
        with errors():
            report = dispatcher.drain()
        data = {
            "claimed": report.claimed,
            "delivered": report.delivered,
            "retried": report.retried,
            "dead": report.dead,
            "errors": report.errors,
        }
        text = (
            f"Delivered {report.delivered} events; {report.retried} to retry, {report.dead} dead."
        )
        for line in report.errors:
            click.echo(f"Warning: {line}", err=True)
        emit(data, as_json, text=text)
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"Dispatcher {dispatcher.worker} running; Ctrl-C to stop.", err=True)
    with errors():
        dispatcher.run_forever(stop, idle=interval)


@events.command("list")
@connection_options
@click.option("--state", type=click.Choice(["pending", "delivered", "dead"]))
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def events_list(
    registry_uri: str | None,
    tracking_uri: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List outbox events, newest first (needs audit:read)."""
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.events_list(state, limit)
    emit(data, as_json, text=table(data, _COLUMNS))


@events.command("retry")
@connection_options
@click.argument("event_id", required=False, type=int)
@click.option("--dead", is_flag=True, help="Retry every dead event.")
@json_option
def events_retry(
    registry_uri: str | None,
    tracking_uri: str | None,
    event_id: int | None,
    dead: bool,
    as_json: bool,
) -> None:
    """Make event ID, or every dead event, due again (needs policy:admin)."""
    if (event_id is None) == (not dead):
        click.echo("Error: give exactly one of an event ID and --dead.", err=True)
        sys.exit(EXIT_USAGE)
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.events_retry(event_id, dead)
    emit(data, as_json, text=f"{data['retried']} events due again.")
