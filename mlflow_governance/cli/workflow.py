"""Policy and promotion commands: ``policy``, ``request``, ``approve``, ``check``, ..."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mlflow_governance.cli._common import (
    EXIT_USAGE,
    comment_option,
    connect,
    connection_options,
    emit,
    errors,
    json_option,
    table,
)

F = TypeVar("F", bound=Callable[..., Any])
_REQUEST_COLUMNS = (
    "id",
    "kind",
    "model",
    "version",
    "target",
    "state",
    "requester",
    "approvals",
    "needs",
)
_STATES = ("pending", "approved", "applied", "rejected", "cancelled", "expired", "superseded")


def _request_rows(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "approvals": ", ".join(a["approver"] for a in r["approvals"]) or "-"}
        for r in requests
    ]


def _show_request(data: dict[str, Any], as_json: bool, lead: str = "") -> None:
    text = lead + table(_request_rows([data]), _REQUEST_COLUMNS)
    if data.get("apply_error"):
        text += f"\nApproved, but not applied: {data['apply_error']}"
    emit(data, as_json, text=text)


# ---------------------------------------------------------------------- policy


@click.group()
def policy() -> None:
    """Validate, apply, show and explain the policy."""


@policy.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option
def policy_validate(file: str, as_json: bool) -> None:
    """Check a policy file; report every problem with file, line, field and valid values."""
    from mlflow_governance.exceptions import PolicyFileError
    from mlflow_governance.policy import load_policy

    try:
        loaded = load_policy(file)
    except PolicyFileError as exc:
        issues = [
            {
                "file": i.file,
                "line": i.line,
                "column": i.column,
                "field": i.field,
                "message": i.message,
                "valid": list(i.valid),
            }
            for i in exc.issues
        ]
        emit({"valid": False, "issues": issues}, as_json, text=exc.message)
        sys.exit(1)
    emit(
        {
            "valid": True,
            "mode": loaded.mode,
            "roles": len(loaded.roles),
            "bindings": len(loaded.bindings),
            "gates": len(loaded.gates),
        },
        as_json,
        text=f"{file}: valid ({loaded.mode}; {len(loaded.roles)} roles, "
        f"{len(loaded.bindings)} bindings, {len(loaded.gates)} gates).",
    )


@policy.command("apply")
@connection_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option
def policy_apply(
    registry_uri: str | None, tracking_uri: str | None, file: str, as_json: bool
) -> None:
    """Store FILE as the applied policy (versioned, audited with a diff; needs policy:admin)."""
    from mlflow_governance.policy import read_policy_file

    access = connect(registry_uri, tracking_uri, notice=False)  # it warns of overrides itself
    with errors():
        result = access.policy_apply(read_policy_file(file), file)
    if result.get("overridden_by"):
        where = "the server" if access.remote else "this process"
        click.echo(
            f"Warning: {where} enforces the file {result['overridden_by']} "
            "(MLFLOW_GOVERNANCE_POLICY) instead of the applied policy; processes without "
            "that setting enforce the applied one.",
            err=True,
        )
    if not result["changed"]:
        emit(result, as_json, text=f"Policy unchanged (already applied as #{result['id']}).")
        return
    emit(
        result,
        as_json,
        text=f"Applied policy #{result['id']} (sha256 {result['sha256'][:12]}).\n{result['diff']}",
    )


def _source_line(source: dict[str, Any]) -> str:
    kind = source.get("kind")
    if kind == "file":
        return f"# source: file {source['path']} (sha256 {source.get('sha256') or 'unreadable'})"
    if kind == "applied":
        return f"# source: applied policy #{source['version']} (sha256 {source.get('sha256')})"
    return "# source: built-in default (audit-only): no policy file, no applied policy"


@policy.command("show")
@connection_options
@json_option
def policy_show(registry_uri: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """Print the policy in force and where it comes from (a file or an applied version)."""
    import yaml

    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.policy_show()
    text = _source_line(data["source"]) + "\n" + yaml.safe_dump(data["policy"], sort_keys=False)
    emit(data, as_json, text=text.rstrip("\n"))


@policy.command("explain")
@connection_options
@click.option("--user", "user", required=True, help="The user to explain.")
@click.option("--model", "model", required=True, help="The registered model name.")
@click.option("--group", "groups", multiple=True, help="Extra groups (as a proxy would send).")
@json_option
def policy_explain(
    registry_uri: str | None,
    tracking_uri: str | None,
    user: str,
    model: str,
    groups: tuple[str, ...],
    as_json: bool,
) -> None:
    """What USER may do on MODEL, and which rule grants each permission."""
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.policy_explain(user, model, frozenset(groups))
    lines = [f"{user} on model {model} (mode {data['mode']}, policy {data['origin']}):"]
    if data.get("note"):
        lines.append(data["note"])
    lines.append(table(data["permissions"], ("permission", "rule")))
    if data["gates"]:
        lines.append("Gates:")
        columns = (
            "gate",
            "stages",
            "aliases",
            "approvals_required",
            "may_approve",
            "may_break_glass",
        )
        lines.append(table(data["gates"], columns))
    emit(data, as_json, text="\n".join(lines))


# ---------------------------------------------------------------------- requests


@click.command("request")
@connection_options
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "to", required=True, metavar="STAGE|@ALIAS")
@comment_option
@json_option
def request_cmd(
    registry_uri: str | None,
    tracking_uri: str | None,
    name: str,
    version: int,
    to: str,
    comment: str | None,
    as_json: bool,
) -> None:
    """Open a promotion request moving NAME VERSION to a stage or @alias."""
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.open_request(name, version, to, comment)
    _show_request(data, as_json, lead=f"Request #{data['id']} is {data['state']}.\n")


def _vote_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @connection_options
    @click.argument("request_id", type=int)
    @comment_option
    @json_option
    def command(
        registry_uri: str | None,
        tracking_uri: str | None,
        request_id: int,
        comment: str | None,
        as_json: bool,
    ) -> None:
        access = connect(registry_uri, tracking_uri)
        with errors():
            data = access.vote(request_id, name, comment)
        _show_request(data, as_json, lead=f"Request #{request_id} is now {data['state']}.\n")

    return command


approve_cmd = _vote_command(
    "approve", "Approve request ID (the last approval applies it when the gate says automatic)."
)
reject_cmd = _vote_command("reject", "Reject request ID.")
cancel_cmd = _vote_command("cancel", "Cancel request ID (its requester or an admin).")


@click.command("requests")
@connection_options
@click.option("--state", type=click.Choice(_STATES))
@click.option("--model", help="Only requests for this model.")
@json_option
def requests_cmd(
    registry_uri: str | None,
    tracking_uri: str | None,
    state: str | None,
    model: str | None,
    as_json: bool,
) -> None:
    """List promotion requests, newest first, with their kind (promotion, rollback, review)."""
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.list_requests(state=state, model=model)
    emit(data, as_json, text=table(_request_rows(data), _REQUEST_COLUMNS))


@click.command("check")
@connection_options
@click.argument("name")
@click.argument("version", type=int)
@click.option("--gate", required=True, help="The gate whose checks to run.")
@json_option
def check_cmd(
    registry_uri: str | None,
    tracking_uri: str | None,
    name: str,
    version: int,
    gate: str,
    as_json: bool,
) -> None:
    """Evaluate a gate's checks (all but approvals): exit 0 pass, 1 fail, 2 error."""
    access = connect(registry_uri, tracking_uri, code=EXIT_USAGE)
    with errors(code=EXIT_USAGE):  # cannot evaluate (2), not a failed check (1)
        data = access.check(name, version, gate)
    verdict = "PASS" if data["passed"] else "FAIL"
    rows = [{**c, "result": "pass" if c["passed"] else "FAIL"} for c in data["checks"]]
    emit(
        data,
        as_json,
        text=f"{verdict}: {name} version {version} against gate {gate}\n"
        + table(rows, ("name", "expected", "actual", "result")),
    )
    if not data["passed"]:
        sys.exit(1)


COMMANDS = (
    policy,
    request_cmd,
    approve_cmd,
    reject_cmd,
    cancel_cmd,
    requests_cmd,
    check_cmd,
)
